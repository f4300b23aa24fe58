"""The floor of one durable SQLite write of an HL7 ORU^R01 transaction, split into its parts.

Runs N small ORU^R01 messages (the 3-OBX message of ``bench/hl7_oru.py``) through the real pipeline once
(authorization off) to capture the write ops of each message's transaction (7 ops, ~80 index rows), then replays
them on the writer's own code (``TxWriter``) into fresh stores, one transaction per message, with
``synchronous`` FULL, NORMAL and OFF, and with and without the full-text rows.  Measured per transaction (the
first ``--skip`` are left out: the store is warm and most patients exist): the inserts and in-transaction
conditional checks (``apply``, wall and thread CPU), the full-text statement, and ``COMMIT`` — with FULL that is
writing the WAL frames plus the fsync, with NORMAL/OFF only the writes (and the FTS5 flush).  A checkpointer
thread runs as in the server.  Also the WAL frames (pages) each commit writes, and the raw cost of writing that
many bytes to a file and ``fdatasync``-ing it.  Prints p10 and median in ms.

    python bench/commit_floor.py [--messages 600] [--skip 200]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def capture(count: int, data: Path) -> list[list[Any]]:
    from bench.hl7_oru import oru
    from fhir_server.app import create_app
    from fhir_server.settings import Hl7Settings, Settings, StorageSettings
    from fhir_server.storage.sqlite.repository import SQLiteRepository

    os.environ["FHIR_AUTH__ENABLED"] = "false"
    captured: list[list[Any]] = []
    original = SQLiteRepository.write

    async def write(self: SQLiteRepository, ops: Any) -> Any:
        captured.append(copy.deepcopy(list(ops)))
        return await original(self, ops)

    SQLiteRepository.write = write  # type: ignore[method-assign]
    try:
        settings = Settings(data_dir=data, storage=StorageSettings(sqlite_path=data / "capture.db"),
                            hl7=Hl7Settings(enabled=False))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            for n in range(count):
                result = await app.state.hl7.pipeline.process(oru(n, "floor"))
                if result.code != "AA":
                    raise SystemExit(f"message {n} answered {result.code}: {result.text}")
    finally:
        SQLiteRepository.write = original  # type: ignore[method-assign]
    return captured


def replay(txs: list[list[Any]], path: Path, sync: str, fulltext: bool, skip: int) -> dict[str, list[float]]:
    from fhir_server.storage.sqlite._index_rows import ParamIds, apply_fulltext
    from fhir_server.storage.sqlite._schema import connect, initialise
    from fhir_server.storage.sqlite._tx import TxWriter
    from fhir_server.storage.sqlite._writer import Checkpointer

    conn = connect(path, 5000)
    initialise(conn)
    conn.execute(f"PRAGMA synchronous = {sync}")
    ids = ParamIds()
    ids.load(conn)
    tx = TxWriter(conn, ids)
    checkpointer = Checkpointer(path, 5000, 0.5, 256 * 256)
    checkpointer.start()
    wal = Path(f"{path}-wal")
    out: dict[str, list[float]] = {k: [] for k in ("apply", "apply_cpu", "fts", "commit", "total", "pages")}
    try:
        for n, ops in enumerate(txs):
            ops = copy.deepcopy(ops)
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            tx.begin()
            t1, c1 = time.perf_counter(), time.thread_time()
            conn.execute("SAVEPOINT request")
            tx.apply(ops)
            conn.execute("RELEASE request")
            t2, c2 = time.perf_counter(), time.thread_time()
            if not fulltext:
                tx.fulltext.clear()
            apply_fulltext(conn, tx.fulltext)
            tx.fulltext.clear()
            t3 = time.perf_counter()
            size = wal.stat().st_size if wal.exists() else 0
            conn.execute("COMMIT")
            t4 = time.perf_counter()
            ids.committed()
            if n >= skip:
                grown = (wal.stat().st_size - size) / (4096 + 24)
                out["apply"].append(t2 - t1)
                out["apply_cpu"].append(c2 - c1)
                out["fts"].append(t3 - t2)
                out["commit"].append(t4 - t3)
                out["total"].append(t4 - t0)
                if grown > 0:  # the WAL grew by this commit's frames (not restarted after a checkpoint)
                    out["pages"].append(grown / 1000)
    finally:
        checkpointer.stop()
        conn.close()
    return out


def raw_fsync(pages: int, rounds: int = 200) -> list[float]:
    """Write ``pages`` WAL-sized frames over the same region of a file (as a restarted WAL does) and fdatasync."""
    fd, name = tempfile.mkstemp(prefix="infirmary-fsync-")
    try:
        size = pages * (4096 + 24)
        os.pwrite(fd, b"\0" * size * 8, 0)
        os.fsync(fd)
        times = []
        for i in range(rounds):
            data = os.urandom(size)
            start = time.perf_counter()
            os.pwrite(fd, data, (i % 8) * size)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
        return times
    finally:
        os.close(fd)
        os.unlink(name)


def fmt(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    return f"{statistics.quantiles(values, n=10)[0] * 1000:.2f}/{statistics.median(values) * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--skip", type=int, default=200)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="infirmary-floor-"))
    try:
        txs = asyncio.run(capture(args.messages, data))
        print(f"{len(txs)} transactions of {len(txs[-1])} ops; p10/median ms per transaction "
              f"(pages: WAL frames per commit)")
        pages = 0.0
        for sync in ("FULL", "NORMAL", "OFF"):
            for fulltext in (True, False):
                path = data / f"replay-{sync}-{fulltext}.db"
                r = replay(txs, path, sync, fulltext, args.skip)
                if r["pages"] and sync == "FULL" and fulltext:
                    pages = statistics.median(r["pages"]) * 1000
                print(f"synchronous={sync:6s} full-text {'on ' if fulltext else 'off'}: "
                      f"apply {fmt(r['apply'])} (CPU {fmt(r['apply_cpu'])}), fts statement {fmt(r['fts'])}, "
                      f"COMMIT {fmt(r['commit'])}, whole transaction {fmt(r['total'])}, "
                      f"pages {statistics.median(r['pages']) * 1000 if r['pages'] else 0:.0f}")
        frames = max(1, round(pages))
        print(f"raw: {frames} frames written over a file region + fdatasync: {fmt(raw_fsync(frames))}; "
              f"1 frame: {fmt(raw_fsync(1))}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

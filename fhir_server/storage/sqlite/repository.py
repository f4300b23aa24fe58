"""The embedded SQLite repository (default backend).

* Writes: one writer thread with group commit (:mod:`._writer`); WAL and ``synchronous=FULL``.
* Point reads (read, vread) run inline on the event loop: they are primary-key look-ups of a few microseconds,
  cheaper than a hop to a thread.
* Conditional look-ups (``find``, ``find_many``) run inline too while no write is waiting for the writer,
  under a budget of SQLite VM steps (``INLINE_STEPS``, well under a millisecond): almost all are index look-ups
  of a few dozen microseconds, and a hop to the pool and back cost 1 to 2 ms of waiting on a busy machine — a
  sequential sender (HL7 v2 over one MLLP connection) pays it for every message (docs/benchmarks.md).  One that
  exceeds the budget is interrupted and run again on the pool.  While writes are waiting (concurrent requests)
  they go to the pool, so the event loop stays free for the others and the writer gets the GIL sooner.
* Longer queries (history, search, counts) run on a small thread pool with one connection per thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from fhir_server.errors import ServiceUnavailable
from fhir_server.search.model import SearchQuery
from fhir_server.storage.base import (
    EverythingRequest,
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    NewResource,
    Repository,
    SearchPage,
    SearchRequest,
    StoredVersion,
    WriteOp,
    WriteOutcome,
)
from fhir_server.storage.sqlite._everything import everything_page
from fhir_server.storage.sqlite._index_rows import ParamIds
from fhir_server.storage.sqlite._lookup_memo import LookupMemo
from fhir_server.storage.sqlite._schema import connect, initialise
from fhir_server.storage.sqlite._search_exec import count_matches, find_ids, search_page
from fhir_server.storage.sqlite._search_sql import TypeCounts
from fhir_server.storage.sqlite._writer import Checkpointer, Writer

T = TypeVar("T")

INLINE_STEPS = 50_000  # SQLite VM steps an inline look-up may take before it moves to the pool
_CHECK_EVERY = 1_000  # steps between two checks of the budget


class _Budget:
    """SQLite progress handler that interrupts the running statement once ``steps`` are spent."""

    def __init__(self, steps: int) -> None:
        self.left = steps // _CHECK_EVERY
        self.exceeded = False

    def __call__(self) -> int:
        self.left -= 1
        if self.left < 0:
            self.exceeded = True
            return 1
        return 0

_READ = """
SELECT r.version, v.method, v.last_updated, v.body
FROM resources r JOIN versions v ON v.seq = r.current_seq
WHERE r.type = ? AND r.id = ?
"""
_VREAD = """
SELECT v.method, v.last_updated, v.body
FROM resources r JOIN versions v ON v.rid = r.rid
WHERE r.type = ? AND r.id = ? AND v.version = ?
"""


class SQLiteRepository(Repository):
    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 10_000,
        write_batch_max: int = 256,
        checkpoint_interval_ms: int = 500,
        wal_max_mb: int = 256,
    ) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self.ids = ParamIds()
        self.counts = TypeCounts()
        self.memo = LookupMemo()
        self._writer = Writer(path, busy_timeout_ms, write_batch_max, self.ids, self.memo)
        self._checkpointer = Checkpointer(path, busy_timeout_ms, checkpoint_interval_ms / 1000, wal_max_mb * 256)
        self._reader: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-query")
        self._local = threading.local()
        self._pool_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        setup = connect(self.path, self._busy_timeout_ms)
        try:
            initialise(setup)
            self.ids.load(setup)
        finally:
            setup.close()
        self._writer.start()
        self._checkpointer.start()
        self._reader = connect(self.path, self._busy_timeout_ms)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._writer.stop)
        await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.stop)
        self._pool.shutdown(wait=True)
        for conn in self._pool_conns:
            conn.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- reads -----------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise ServiceUnavailable("the store is closed")
        return self._reader

    async def read(self, resource_type: str, id: str) -> StoredVersion | None:
        row = self._conn().execute(_READ, (resource_type, id)).fetchone()
        if row is None:
            return None
        version, method, last_updated, body = row
        return StoredVersion(resource_type, id, version, last_updated, method, body)

    async def vread(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        row = self._conn().execute(_VREAD, (resource_type, id, version)).fetchone()
        if row is None:
            return None
        method, last_updated, body = row
        return StoredVersion(resource_type, id, version, last_updated, method, body)

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self.path, self._busy_timeout_ms)
                self._local.conn = conn
                with self._lock:
                    self._pool_conns.append(conn)
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def _inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the event loop's connection if it finishes within the step budget, else on the pool."""
        if self._writer.waiting:
            return await self._query(fn)
        conn = self._conn()
        budget = _Budget(INLINE_STEPS)
        conn.set_progress_handler(budget, _CHECK_EVERY)
        try:
            return fn(conn)
        except sqlite3.OperationalError:
            if not budget.exceeded:
                raise
        finally:
            conn.set_progress_handler(None, 0)
        return await self._query(fn)

    async def find(self, query: SearchQuery, limit: int = 2) -> list[str]:
        return (await self.find_many([(query, limit)]))[0]

    async def find_many(self, queries: Sequence[tuple[SearchQuery, int]]) -> list[list[str]]:
        if not queries:
            return []
        return await self._inline(lambda conn: self._find_many(conn, queries))

    def _find_many(self, conn: sqlite3.Connection, queries: Sequence[tuple[SearchQuery, int]]) -> list[list[str]]:
        """The look-ups; on the event loop's connection they are kept for the writer (see :mod:`._lookup_memo`)."""
        stamp = self.memo.stamp()  # before the first statement's snapshot
        found = [find_ids(conn, self.ids, q, limit) for q, limit in queries]
        if conn is self._reader:
            for (query, limit), ids in zip(queries, found, strict=True):
                self.memo.record(stamp, query, limit, ids)
        return found

    async def search(self, request: SearchRequest) -> SearchPage:
        return await self._query(lambda conn: search_page(conn, self.ids, request, self.counts))

    async def everything(self, request: EverythingRequest) -> SearchPage:
        return await self._query(lambda conn: everything_page(conn, self.ids, request))

    async def count_matches(self, query: SearchQuery) -> int:
        return await self._query(lambda conn: count_matches(conn, self.ids, query, self.counts))

    async def count(self, resource_type: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if resource_type is None:
                row = conn.execute("SELECT count(*) FROM resources WHERE deleted = 0").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM resources WHERE type = ? AND deleted = 0", (resource_type,)
                ).fetchone()
            return int(row[0])

        return await self._query(run)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._query(lambda conn: _history(conn, query))

    # -- writes ----------------------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        return await self._writer.submit(ops)

    async def create_many(self, resource_type: str, items: Sequence[NewResource]) -> list[bool]:
        """One request of the writer thread: one look-up of the existing ids, one ``executemany`` per table."""
        if not items:
            return []
        return await self._writer.submit_bulk(resource_type, items)


def _history_filter(query: HistoryQuery) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if query.resource_type is not None:
        where.append("v.type = ?")
        args.append(query.resource_type)
    if query.id is not None:
        where.append("r.id = ?")
        args.append(query.id)
    if query.since is not None:
        where.append("v.last_updated >= ?")
        args.append(query.since)
    if query.at_end is not None:
        where.append("v.last_updated < ?")
        args.append(query.at_end)
    if query.at_start is not None:
        # the version must still be current at at_start: no later version of the same resource before it
        where.append(
            "NOT EXISTS (SELECT 1 FROM versions n WHERE n.rid = v.rid AND n.version > v.version "
            "AND n.last_updated <= ?)"
        )
        args.append(query.at_start)
    return (" AND ".join(where) or "1"), args


def _history(conn: sqlite3.Connection, query: HistoryQuery) -> HistoryPage:
    base_where, base_args = _history_filter(query)
    source = "versions v JOIN resources r ON r.rid = v.rid"
    conn.execute("BEGIN")  # one snapshot for the page, the total and the neighbour checks
    try:
        total = conn.execute(f"SELECT count(*) FROM {source} WHERE {base_where}", base_args).fetchone()[0] \
            if query.total else None
        cols = "v.seq, r.id, v.type, v.version, v.last_updated, v.method, v.body"
        if query.after_seq is not None:
            rows = conn.execute(
                f"SELECT {cols} FROM {source} WHERE {base_where} AND v.seq > ? ORDER BY v.seq ASC LIMIT ?",
                [*base_args, query.after_seq, query.count],
            ).fetchall()
            rows.reverse()
        else:
            extra, extra_args = ("AND v.seq < ?", [query.before_seq]) if query.before_seq is not None else ("", [])
            rows = conn.execute(
                f"SELECT {cols} FROM {source} WHERE {base_where} {extra} ORDER BY v.seq DESC LIMIT ?",
                [*base_args, *extra_args, query.count],
            ).fetchall()
        entries = [
            HistoryEntry(seq, StoredVersion(rtype, rid_id, version, lu, method, body))
            for seq, rid_id, rtype, version, lu, method, body in rows
        ]
        has_newer = has_older = False
        if entries:
            has_newer = (
                conn.execute(
                    f"SELECT 1 FROM {source} WHERE {base_where} AND v.seq > ? LIMIT 1",
                    [*base_args, entries[0].seq],
                ).fetchone()
                is not None
            )
            has_older = (
                conn.execute(
                    f"SELECT 1 FROM {source} WHERE {base_where} AND v.seq < ? LIMIT 1",
                    [*base_args, entries[-1].seq],
                ).fetchone()
                is not None
            )
    finally:
        conn.execute("COMMIT")
    return HistoryPage(entries, total, has_newer, has_older)

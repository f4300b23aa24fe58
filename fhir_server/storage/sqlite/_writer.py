"""The single writer thread: group commit of concurrent write requests.

Every write request (a list of ops that must be atomic) is queued.  The writer takes whatever is waiting (up to
``batch_max`` requests), runs each in its own SAVEPOINT inside one ``BEGIN IMMEDIATE`` transaction and commits
once, so one fsync covers many requests.  A request that fails rolls back to its savepoint and does not disturb
the others; if the commit itself fails, every request of the batch fails.  Only after the commit are the waiting
coroutines told their outcome, so "200 OK" always means "durably on disk".  ``BEGIN IMMEDIATE`` also serialises
writers of other processes on the same file.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_server.errors import FhirError, InternalError, ServiceUnavailable
from fhir_server.storage.base import NewResource, WriteOp, WriteOutcome
from fhir_server.storage.sqlite._index_rows import ParamIds, apply_fulltext
from fhir_server.storage.sqlite._lookup_memo import LookupMemo
from fhir_server.storage.sqlite._schema import connect
from fhir_server.storage.sqlite._tx import TxWriter

log = logging.getLogger(__name__)


@dataclass
class _Job:
    ops: Sequence[WriteOp]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    result: list[Any] | None = None
    error: BaseException | None = None
    bulk: tuple[str, Sequence[NewResource]] | None = None  # a create_many instead of ops


def _deliver(job: _Job) -> None:
    if job.future.done():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        assert job.result is not None
        job.future.set_result(job.result)


class Checkpointer:
    """Copies the WAL back into the database file on its own thread, so that commits never wait for it.

    SQLite's automatic checkpoint runs inside the commit that crosses the threshold; under a steady write load
    that was half the cost of a commit (measured: docs/benchmarks.md).  Connections are opened with
    ``wal_autocheckpoint = 0``; this thread runs a PASSIVE checkpoint (it never blocks readers or the writer) every
    ``interval``, and a RESTART checkpoint (which waits for the writer briefly) if the WAL still outgrows
    ``max_pages``, to bound its size.  Several server processes may each run one; a busy checkpoint just waits for
    the next round.  Durability is unaffected: a commit is durable once it is in the WAL.
    """

    def __init__(self, path: Path, busy_timeout_ms: int, interval_s: float, max_pages: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._interval_s = interval_s
        self._max_pages = max_pages
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn = connect(self._path, self._busy_timeout_ms)
        try:
            while not self._stop.wait(self._interval_s):
                self.checkpoint(conn)
            self.checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
        try:
            _, wal_pages, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            if mode == "PASSIVE" and wal_pages > self._max_pages:
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error as exc:  # busy or locked: the next round tries again
            log.debug("checkpoint skipped: %s", exc)


class Writer:
    def __init__(
        self, path: Path, busy_timeout_ms: int, batch_max: int, ids: ParamIds, memo: LookupMemo | None = None
    ) -> None:
        self._path = path
        self._ids = ids
        self.memo = memo
        self._busy_timeout_ms = busy_timeout_ms
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.waiting = 0  # writes submitted and not yet answered (a sign of concurrent requests)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    async def submit(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        result: list[WriteOutcome] = await self._submit(ops, None)
        return result

    async def submit_bulk(self, resource_type: str, items: Sequence[NewResource]) -> list[bool]:
        result: list[bool] = await self._submit((), (resource_type, items))
        return result

    async def _submit(self, ops: Sequence[WriteOp], bulk: tuple[str, Sequence[NewResource]] | None) -> Any:
        if not self._thread.is_alive():
            raise ServiceUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(ops, loop.create_future(), loop, bulk=bulk)
        self.waiting += 1
        try:
            self._queue.put(job)
            return await job.future
        finally:
            self.waiting -= 1

    def _run(self) -> None:
        try:
            conn = connect(self._path, self._busy_timeout_ms)
            conn.execute("PRAGMA busy_timeout = 0")  # the write lock is polled in _begin
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        tx = TxWriter(conn, self._ids, self.memo)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._batch_max:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._commit(conn, tx, batch)
                for job in batch:
                    try:
                        job.loop.call_soon_threadsafe(_deliver, job)
                    except RuntimeError:  # the caller's event loop has closed
                        log.warning("a write finished after its caller's event loop closed")
                if stop:
                    return
        finally:
            conn.close()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, polling every half millisecond while another process holds the write lock.

        SQLite's own busy handler sleeps in growing steps (up to 100 ms), which leaves the lock idle most of the
        time when several worker processes take turns; polling hands it over within a millisecond."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.0005)

    def _commit(self, conn: sqlite3.Connection, tx: TxWriter, batch: list[_Job]) -> None:
        try:
            self._transaction(conn, tx, batch)
        finally:
            if self.memo is not None:
                self.memo.advance()  # whatever happened: look-ups made before it no longer vouch for the store

    def _transaction(self, conn: sqlite3.Connection, tx: TxWriter, batch: list[_Job]) -> None:
        try:
            self._begin(conn)
            tx.begin()
        except sqlite3.Error as exc:
            log.error("could not start a write transaction: %s", exc)
            tx.forget_templates()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                job.error = ServiceUnavailable("the store is busy or unavailable; retry later")
            return
        for job in batch:
            conn.execute("SAVEPOINT request")
            mark = self._ids.mark()
            fulltext_mark = len(tx.fulltext)
            try:
                job.result = tx.apply(job.ops) if job.bulk is None else tx.create_many(*job.bulk)
                conn.execute("RELEASE request")
            except BaseException as exc:
                conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")
                self._ids.rollback_to(mark)
                tx.forget_templates()
                del tx.fulltext[fulltext_mark:]
                if isinstance(exc, FhirError):
                    job.error = exc
                else:
                    log.exception("write failed")
                    job.error = InternalError("the write failed; nothing was stored")
        try:
            apply_fulltext(conn, tx.fulltext)
            tx.fulltext.clear()
            conn.execute("COMMIT")
            self._ids.committed()
        except sqlite3.Error as exc:
            log.error("commit failed: %s", exc)
            tx.fulltext.clear()
            tx.forget_templates()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._ids.rollback_to(0)
            for job in batch:
                job.result = None
                job.error = InternalError("the commit failed; nothing was stored")

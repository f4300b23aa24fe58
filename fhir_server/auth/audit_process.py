"""The audit writer process: AuditEvents built, indexed and stored beside the API process, not inside it.

An IHE ATNA-style split: the API process is the audit *creator* — at the end of a request it writes one short
JSON line (:mod:`fhir_server.auth._audit_records`) to the stdin of a child process, ``infirmary audit-writer`` —
and the child is the audit *repository*: it builds the AuditEvents, indexes them and writes them to the same
store in batches of up to ``audit_batch_max`` (one commit each), then answers ``ok <lines>`` on its stdout.
Building, indexing and storing an AuditEvent costs about twice what the read it records costs
(docs/benchmarks.md); in a child it runs on another core instead of holding the API process's interpreter.

Nothing is lost: the API process keeps every line until the child has acknowledged its commit.  A child that
dies is started again and sent the unacknowledged lines again (their event ids are derived from the line, so a
line written before the crash is refused as a duplicate, not written twice).  When ``audit_queue_max`` lines are
waiting, requests wait (never drop).  At shutdown the child is asked to finish (stdin closed) and given
``grace_s``; lines still unacknowledged then are built here and spooled (``audit-spool-<pid>.ndjson``), and the
next start sends them first.  ``flush()`` waits until everything sent so far is stored (tests, orderly stops).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fhir_server import jsonio
from fhir_server.auth._audit_records import RELOAD, event_line, events_from_line, request_line
from fhir_server.auth.audit import AuditWriter, RequestInfo
from fhir_server.auth.guard import AccessRecord
from fhir_server.auth.tokens import AccessContext
from fhir_server.settings import Settings
from fhir_server.storage.base import WriteOutcome

log = logging.getLogger("fhir_server.audit")

_HIGH_WATER = 256 * 1024  # bytes buffered for the child's stdin before new lines wait in the API process (never a request)


class AuditProcess:
    """The API side of the audit writer process (same interface as :class:`AuditWriter`)."""

    def __init__(self, settings: Settings, linked_types: frozenset[str], spooler: AuditWriter) -> None:
        self.settings = settings
        self.linked_types = linked_types
        self.spooler = spooler  # spool files (claimed at start, written at stop) as the in-process writer keeps them
        self.queue_max = settings.auth.audit_queue_max
        self.written = 0
        self.restarts = 0
        self._pending: collections.deque[bytes] = collections.deque()  # sent, not yet acknowledged
        self._buffer: list[bytes] = []  # not yet handed to the pipe (written once per loop iteration)
        self._flush_scheduled = False
        self._drainer: asyncio.Future[None] | None = None  # the one task waiting for a full pipe to drain
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._proc_starting: asyncio.Future[None] | None = None

    # -- the interface the API uses ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Send what earlier runs spooled; the child itself starts with the first line to write."""
        await self.spooler.write_spooled(self)

    async def submit(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            await self._send(event_line(event))

    async def submit_request(self, context: AccessContext | None, record: AccessRecord, info: RequestInfo,
                             break_glass: bool, linked_types: frozenset[str],
                             extra_agents: Sequence[dict[str, Any]] = ()) -> None:
        await self._send(request_line(context, record, info, break_glass, time.time(), extra_agents))

    async def after_write(self, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        """A SearchParameter written: the child indexes AuditEvents by it from the next line on."""
        if outcome.resource_type == "SearchParameter" and not outcome.noop and self._proc is not None:
            await self._send(RELOAD)

    async def flush(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._pending)

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None and not self._pending:
            proc.kill()  # nothing to write: no need to wait for it to finish starting
            await proc.wait()
        elif proc is not None and proc.returncode is None:
            self._write_buffer()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout=grace_s)
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=max(1.0, grace_s / 2))
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._drainer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        left = list(self._pending)  # every line buffered is pending too
        self._pending.clear()
        self._buffer.clear()
        if left:
            events = [e for line in left if line != RELOAD for e in events_from_line(line, self.linked_types)]
            self.spooler.spool_events(events)

    # -- the pipe ---------------------------------------------------------------------------------------------

    async def _send(self, line: bytes) -> None:
        if len(self._pending) >= self.queue_max:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._pending) < self.queue_max)
        if self._proc is None and not self._stopping:
            self._proc_starting = self._proc_starting or asyncio.ensure_future(self._spawn())
            await asyncio.shield(self._proc_starting)
        self._pending.append(line)
        self._buffer.append(line)
        if not self._flush_scheduled and self._drainer is None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_buffer)

    def _write_buffer(self) -> None:
        """Hand what the requests of this loop iteration queued to the pipe, in one write.

        When the child reads slower than requests come, the pipe's buffer fills: then one task waits for it to
        drain and writes what queued meanwhile.  A request never waits for the pipe (it has had its response; a
        request kept waiting would keep its whole state alive, and thousands of them make every garbage
        collection long): lines wait in ``_buffer``, and requests wait only at ``audit_queue_max``."""
        self._flush_scheduled = False
        proc = self._proc
        if not self._buffer or proc is None or proc.stdin is None or proc.returncode is not None:
            return  # a dead child: _respawn sends everything pending again
        data = b"".join(self._buffer)
        self._buffer.clear()
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(data)
            if self._drainer is None and proc.stdin.transport.get_write_buffer_size() > _HIGH_WATER:
                self._drainer = asyncio.ensure_future(self._drain(proc))

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        try:
            if proc.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await proc.stdin.drain()
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None
                if not self._flush_scheduled:
                    self._write_buffer()

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fhir_server", "audit-writer", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 20,
        )
        assert self._proc.stdin is not None
        settings = self.settings.model_dump(mode="json", include={"data_dir", "storage", "auth", "server"})
        header = {"settings": settings, "linked": sorted(self.linked_types)}
        self._proc.stdin.write(jsonio.dumps(header) + b"\n")
        self._reader = asyncio.create_task(self._acks(self._proc), name="audit writer acks")

    async def _acks(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            verb, _, count = line.decode("ascii", "replace").partition(" ")
            if verb != "ok" or not count.strip().isdigit():
                continue
            async with self._changed:
                for _ in range(int(count)):
                    self._pending.popleft()
                self.written += int(count)
                self._changed.notify_all()
        await proc.wait()
        if not self._stopping:
            await self._respawn(proc.returncode)

    async def _respawn(self, returncode: int | None) -> None:
        self.restarts += 1
        log.error("audit: the audit writer process ended (exit %s); starting it again and sending %d "
                  "unacknowledged lines again", returncode, len(self._pending))
        await asyncio.sleep(min(5.0, 0.2 * self.restarts))
        self._buffer = list(self._pending)
        self._drainer = None  # (one waiting on the dead child's pipe ends on its own)
        await self._spawn()
        self._write_buffer()

"""The API side of the audit writer process: a request never waits for the pipe to the child, and nothing queued
while the pipe was full is lost."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from fhir_server.app import build_repository
from fhir_server.auth.audit import AuditWriter, RequestInfo
from fhir_server.auth.audit_process import AuditProcess
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.settings import AuthSettings, Settings, StorageSettings

LINKED = frozenset({"Patient", "Observation"})
SYSTEM = AccessContext(subject="lab", client_id="lab", scopes=ScopeSet.parse("system/*.rs"), kind="system",
                       token_id="t1", issued_at=0, expires_at=0)


async def _submit(sink: AuditProcess, start: int, n: int) -> None:
    for i in range(start, start + n):
        record = AccessRecord([Touch("Observation", f"obs-{i:06d}-{'x' * 40}", frozenset({f"p{i % 9}"}), "R")])
        info = RequestInfo("GET", f"Observation/obs-{i:06d}", "_elements=code,subject,effective", 200, "10.1.2.3")
        await sink.submit_request(SYSTEM, record, info, False, LINKED)


async def test_requests_do_not_wait_for_a_full_pipe_and_every_line_is_written_later(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "audit.db"),
                        auth=AuthSettings(enabled=True, audit_batch_max=500))
    repo = build_repository(settings)
    await repo.open()
    sink = AuditProcess(settings, LINKED, AuditWriter(repo, None, spool=tmp_path / "audit-spool.ndjson"))
    try:
        await sink.start()
        await _submit(sink, 0, 10)
        await sink.flush()
        assert sink._proc is not None
        os.kill(sink._proc.pid, signal.SIGSTOP)  # a child that reads nothing: the pipe fills
        try:
            for start in range(10, 3010, 100):  # ~1 MB of lines, far beyond the pipe's buffer and the high water
                await asyncio.wait_for(_submit(sink, start, 100), timeout=10)
                await asyncio.sleep(0)  # loop iterations: the lines are handed to the pipe as far as it takes them
            assert sink._drainer is not None  # one task waits for the pipe; the requests did not
        finally:
            os.kill(sink._proc.pid, signal.SIGCONT)
        await asyncio.wait_for(sink.flush(), timeout=120)
        assert await repo.count("AuditEvent") == 3010  # each request once, in spite of the full pipe
        assert sink._drainer is None and not sink._buffer
    finally:
        await sink.stop()
        await repo.close()

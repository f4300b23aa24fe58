"""The audit writer process: every request's AuditEvents stored once — through a crash of the child, and at a
shutdown the child cannot finish (spooled, then written by the next start)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from fhir_server.app import build_repository
from fhir_server.auth._audit_records import events_from_line, request_line
from fhir_server.auth.audit import AuditWriter, RequestInfo, request_events
from fhir_server.auth.audit_process import AuditProcess
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.settings import AuthSettings, Settings, StorageSettings

LINKED = frozenset({"Patient", "Observation"})
STAFF = AccessContext(subject="u-house", client_id="workspace", scopes=ScopeSet.parse("user/*.rs"), kind="staff",
                      token_id="t1", issued_at=0, expires_at=0, fhir_user="Practitioner/house",
                      roles=frozenset({"physician"}))


def _record(i: int) -> AccessRecord:
    return AccessRecord([Touch("Observation", f"o{i}", frozenset({f"p{i % 7}"}), "R"),
                         Touch("Patient", f"p{i % 7}", frozenset({f"p{i % 7}"}), "R")])


def _info(i: int) -> RequestInfo:
    return RequestInfo("GET", f"Observation/o{i}", "", 200, "10.1.2.3")


def test_a_line_makes_the_events_the_request_would_have_made() -> None:
    record, info = _record(3), _info(3)
    direct = request_events(STAFF, record, info, linked_types=LINKED, now=1_700_000_000.25)
    line = request_line(STAFF, record, info, False, 1_700_000_000.25)
    rebuilt = events_from_line(line, LINKED)
    assert b"Bearer" not in line and b"t1" not in line  # never the token, not even its id
    assert [{k: v for k, v in e.items() if k != "id"} for e in rebuilt] == direct
    assert events_from_line(line, LINKED)[0]["id"] == rebuilt[0]["id"]  # the same line, the same event ids


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "audit.db"),
                    auth=AuthSettings(enabled=True, audit_batch_max=50))


def _spools(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in directory.glob("audit-spool-*")]


async def _submit(sink: AuditProcess, start: int, n: int) -> None:
    for i in range(start, start + n):
        await sink.submit_request(STAFF, _record(i), _info(i), False, LINKED)


async def test_a_crashed_writer_is_restarted_and_nothing_is_lost_or_written_twice(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    repo = build_repository(settings)
    await repo.open()
    sink = AuditProcess(settings, LINKED, AuditWriter(repo, None, spool=tmp_path / "audit-spool.ndjson"))
    try:
        await sink.start()
        await _submit(sink, 0, 300)
        await sink.flush()
        assert await repo.count("AuditEvent") == 300
        proc = sink._proc
        assert proc is not None
        await _submit(sink, 300, 400)  # in the pipe, partly written, when the child dies
        proc.send_signal(signal.SIGKILL)
        await _submit(sink, 700, 300)
        await asyncio.wait_for(sink.flush(), timeout=60)
        assert sink.restarts == 1 and sink._proc is not proc
        assert await repo.count("AuditEvent") == 1000  # each request once
    finally:
        await sink.stop()
        await repo.close()


async def test_what_the_writer_cannot_finish_is_spooled_and_written_by_the_next_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    repo = build_repository(settings)
    await repo.open()
    spool = tmp_path / "audit-spool.ndjson"
    try:
        sink = AuditProcess(settings, LINKED, AuditWriter(repo, None, spool=spool))
        await sink.start()
        await _submit(sink, 0, 10)
        await sink.flush()
        assert sink._proc is not None
        os.kill(sink._proc.pid, signal.SIGSTOP)  # a writer that no longer writes
        await _submit(sink, 10, 25)
        await sink.stop(grace_s=0.5)
        (spooled,) = _spools(tmp_path)
        assert len(spooled.splitlines()) == 25
        assert await repo.count("AuditEvent") == 10
        again = AuditProcess(settings, LINKED, AuditWriter(repo, None, spool=spool))
        await again.start()
        await again.flush()
        await again.stop()
        assert not _spools(tmp_path)
        assert await repo.count("AuditEvent") == 35
    finally:
        await repo.close()

"""Background work is audited like a request (authorization on): task functions and post-write reactions act as
the jobs identity through a scoped repository, and what they touch of a patient's record becomes AuditEvents."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.auth.audit import CLIENT_SYSTEM, OPERATION_SYSTEM
from fhir_server.auth.security import JOBS_IDENTITY
from fhir_server.jobs import JobContext, ManualClock
from fhir_server.jobs._execute import run_attempt
from fhir_server.jobs.registry import TaskSpec
from fhir_server.settings import AuthSettings, JobsSettings, NotifySettings, Settings, StorageSettings
from tests.workflows.notifications._servers import CeleryWorker, RedisServer, SmsEndpoint

HOUR = 3600


def _settings(tmp_path: Path, *, enabled: bool = True, sms_url: str | None = None) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    auth=AuthSettings(enabled=enabled), jobs=JobsSettings(backoff_s=0.01, max_attempts=1),
                    notify=NotifySettings(sms_url=sms_url, sms_token="gateway-secret"))


@pytest.fixture
def sms() -> Iterator[SmsEndpoint]:
    endpoint = SmsEndpoint()
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
async def fhir(tmp_path: Path, sms: SmsEndpoint) -> AsyncIterator[Any]:
    from fhir_server.app import create_app

    app = create_app(_settings(tmp_path, sms_url=f"{sms.url}/send"), clock=ManualClock(time.time()))
    async with app.router.lifespan_context(app):
        yield app.state.fhir


async def audit_events(fhir: Any, query: str = "_lastUpdated=gt2000-01-01") -> list[dict[str, Any]]:
    """The AuditEvents stored so far (after the audit sink has written everything it was given)."""
    await fhir.security.audit_writer.flush()
    ids = await fhir.repo.find(fhir.resources.criteria("AuditEvent", query), limit=1000)
    events = []
    for id in ids:
        stored = await fhir.repo.read("AuditEvent", id)
        events.append(jsonio.loads(stored.body))
    return events


def job_code(event: dict[str, Any]) -> str:
    return next(c["code"] for c in event["subtype"] if c["system"] == OPERATION_SYSTEM)


def agent_id(event: dict[str, Any]) -> str:
    who = event["agent"][0]["who"]["identifier"]
    assert who["system"] == CLIENT_SYSTEM
    return str(who["value"])


async def _create(fhir: Any, resource: dict[str, Any]) -> str:
    outcome = await fhir.resources.create(resource["resourceType"], jsonio.dumps(resource))
    return str(outcome.id)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_appointment_notifications_are_audited_for_the_patient_as_the_jobs_identity(
        fhir: Any, sms: SmsEndpoint) -> None:
    await fhir.runner.idle()
    assert await audit_events(fhir) == [], "the start-up sweep touched no patient data: no AuditEvent"
    patient = await _create(fhir, {"resourceType": "Patient", "name": [{"family": "Audit"}],
                                   "telecom": [{"system": "sms", "value": "+34600000001"}]})
    start = fhir.jobs.clock.now() + 72 * HOUR
    await _create(fhir, {"resourceType": "Appointment", "status": "booked", "start": _at(start),
                         "end": _at(start + 1800),
                         "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]})
    await fhir.runner.idle()
    sent = await fhir.repo.find(fhir.resources.criteria(
        "Communication", f"recipient=Patient/{patient}&status=completed&medium=sms"), 10)
    assert len(sent) == 1 and len(sms.requests) == 1, "the booking confirmation was sent by SMS"

    events = await audit_events(fhir, f"patient=Patient/{patient}")
    assert {agent_id(e) for e in events} == {JOBS_IDENTITY}
    assert all(e["agent"][0]["requestor"] and e["outcome"] == "0" for e in events)
    # one event per job run that touched the patient: the confirmation (reads the Appointment, writes the
    # patient's CommunicationRequest), its dispatch (writes the Communications) and the SMS delivery
    assert Counter(job_code(e) for e in events) == {"job:notifications.appointment_changed": 1,
                                                    "job:notifications.dispatch": 1,
                                                    "job:notifications.deliver": 1}
    delivered = next(e for e in events if job_code(e) == "job:notifications.deliver")
    assert {"reference": f"Communication/{sent[0]}"} in [x.get("what") for x in delivered["entity"]]
    assert await audit_events(fhir, "patient:missing=true") == [], "no event without a patient"


async def test_a_failing_job_is_audited_as_a_server_error_and_one_touching_no_patient_leaves_none(
        fhir: Any) -> None:
    await fhir.runner.idle()
    patient = await _create(fhir, {"resourceType": "Patient", "name": [{"family": "Fails"}]})
    practitioner = await _create(fhir, {"resourceType": "Practitioner", "name": [{"family": "Shared"}]})

    async def reads_practitioner(ctx: JobContext) -> None:
        assert await ctx.repo.read("Practitioner", practitioner) is not None

    async def reads_patient_then_fails(ctx: JobContext) -> None:
        assert await ctx.repo.read("Patient", patient) is not None
        raise RuntimeError("the channel is down")

    ctx = JobContext(fhir, fhir.jobs, fhir.jobs.clock)
    settings = fhir.settings.jobs
    assert (await run_attempt(TaskSpec("test.shared", reads_practitioner), ctx, (), settings)).ok
    assert not (await run_attempt(TaskSpec("test.fails", reads_patient_then_fails), ctx, (), settings)).ok
    events = await audit_events(fhir)
    assert [(job_code(e), e["outcome"], agent_id(e)) for e in events] == [("job:test.fails", "8", JOBS_IDENTITY)]
    assert events[0]["entity"][0]["what"] == {"reference": f"Patient/{patient}"}


async def test_with_authorization_off_jobs_are_neither_scoped_nor_audited(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    app = create_app(_settings(tmp_path, enabled=False), clock=ManualClock(time.time()))
    async with app.router.lifespan_context(app):
        fhir = app.state.fhir
        patient = await _create(fhir, {"resourceType": "Patient"})
        seen: list[Any] = []

        async def reads_patient(ctx: JobContext) -> None:
            seen.append(ctx.repo)
            assert await ctx.repo.read("Patient", patient) is not None

        ctx = JobContext(fhir, fhir.jobs, fhir.jobs.clock)
        assert (await run_attempt(TaskSpec("test.unscoped", reads_patient), ctx, (), fhir.settings.jobs)).ok
        assert seen == [fhir.repo]
        assert await fhir.repo.count("AuditEvent") == 0


async def test_under_celery_the_worker_audits_its_jobs_as_the_jobs_identity(tmp_path: Path,
                                                                         sms: SmsEndpoint) -> None:
    from fhir_server.app import create_app
    from fhir_server.jobs.celery_app import create_celery

    redis = RedisServer(tmp_path)
    settings = _settings(tmp_path, sms_url=f"{sms.url}/send")
    settings = settings.model_copy(update={"jobs": JobsSettings(backend="celery", redis_url=redis.url,
                                                                max_attempts=1)})
    app = create_app(settings, clock=ManualClock(time.time()))
    worker = None
    try:
        async with app.router.lifespan_context(app):  # the API process first: it makes the keys the worker reads
            env = {**os.environ, "FHIR_DATA_DIR": str(tmp_path), "FHIR_STORAGE__SQLITE_PATH": str(tmp_path / "test.db"),
                   "FHIR_AUTH__ENABLED": "true", "FHIR_JOBS__BACKEND": "celery", "FHIR_JOBS__REDIS_URL": redis.url,
                   "FHIR_JOBS__MAX_ATTEMPTS": "1", "FHIR_NOTIFY__SMS_URL": f"{sms.url}/send",
                   "FHIR_NOTIFY__SMS_TOKEN": "gateway-secret"}
            worker = CeleryWorker(env, tmp_path / "worker.log")
            await asyncio.to_thread(worker.wait_ready, create_celery(settings))
            fhir = app.state.fhir
            patient = await _create(fhir, {"resourceType": "Patient",
                                           "telecom": [{"system": "sms", "value": "+34600000002"}]})
            start = time.time() + 72 * HOUR
            await _create(fhir, {"resourceType": "Appointment", "status": "booked", "start": _at(start),
                                 "end": _at(start + 1800), "participant": [
                                     {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]})
            deadline = time.monotonic() + 30
            events: list[dict[str, Any]] = []
            while time.monotonic() < deadline and len(events) < 3:
                await asyncio.sleep(0.1)
                events = await audit_events(fhir, f"patient=Patient/{patient}")
            assert len(sms.requests) == 1
            assert Counter(job_code(e) for e in events) == {"job:notifications.appointment_changed": 1,
                                                            "job:notifications.dispatch": 1,
                                                            "job:notifications.deliver": 1}
            assert {agent_id(e) for e in events} == {JOBS_IDENTITY}
    finally:
        if worker is not None:
            worker.stop()
        redis.stop()

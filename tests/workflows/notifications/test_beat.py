"""``infirmary beat`` for real: with a Redis broker and an ``infirmary worker``, a reminder that falls due is sent
only once beat is running (beat sends the periodic sweep; nothing else dispatches a due CommunicationRequest)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.settings import JobsSettings
from tests.workflows.notifications._servers import CeleryBeat, CeleryWorker, RedisServer
from tests.workflows.notifications.conftest import Harness, Servers, _environment, _settings
from tests.workflows.notifications.test_delivery import HOUR, appointment, people

SWEEP_S = 1.0
DUE_IN_S = 6.0


@pytest.fixture
async def celery_harness(servers: Servers, tmp_path: Path) -> AsyncIterator[tuple[Harness, dict[str, str]]]:
    from fhir_server.app import create_app
    from fhir_server.jobs.celery_app import create_celery
    from fhir_server.jobs.clock import ManualClock

    redis = RedisServer(tmp_path)
    base = _settings(tmp_path, servers, backend="celery", redis_url=redis.url)
    settings = base.model_copy(update={"jobs": JobsSettings(**{**base.jobs.model_dump(), "sweep_interval_s": SWEEP_S})})
    env = {**os.environ, **_environment(settings), "FHIR_JOBS__SWEEP_INTERVAL_S": str(SWEEP_S)}
    worker = CeleryWorker(env, tmp_path / "worker.log")
    try:
        worker.wait_ready(create_celery(settings))
        clock = ManualClock(time.time())  # the API's; the worker and beat keep real time
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
                yield Harness("celery", app, client, clock, servers), env
    finally:
        worker.stop()
        redis.stop()


async def test_beat_sends_the_sweep_that_dispatches_a_due_reminder(celery_harness: tuple[Harness, dict[str, str]],
                                                                   tmp_path: Path) -> None:
    h, env = celery_harness
    p = await people(h)
    due = time.time() + DUE_IN_S
    await h.create(appointment(p, due + 2 * HOUR))  # the 2 h reminder falls due in DUE_IN_S; the 24 h one is past

    def reminders() -> list[str]:
        return [m.data for m in h.smtp.mails_to(p["email"]) if "this is a reminder" in m.data]

    async def mails(n: int) -> bool:
        return len(h.smtp.mails_to(p["email"])) >= n

    assert await h.eventually(lambda: mails(1))  # the confirmation: the worker runs reactions without beat
    await asyncio.sleep(max(0.0, due - time.time()) + 3 * SWEEP_S)
    assert reminders() == [], "due, but nothing dispatches it without beat"
    beat = CeleryBeat(env, tmp_path / "beat.log")
    try:
        async def reminded() -> bool:
            return len(reminders()) == 1

        assert await h.eventually(reminded, within_s=30), (tmp_path / "beat.log").read_text()
        await asyncio.sleep(3 * SWEEP_S)  # more sweeps: the reminder is not sent twice
        assert len(reminders()) == 1
        assert beat.proc.poll() is None
    finally:
        beat.stop()

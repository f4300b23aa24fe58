"""The notification tests run twice: with the in-process runner under a hand-driven clock, and under Celery with
a real redis-server and a real worker process (started once per session).  Tests see one ``Harness``:
``advance`` moves the clock (and, under Celery, sends the sweep with that time), ``eventually`` waits for a state."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from fhir_server.jobs import ManualClock
from fhir_server.settings import JobsSettings, NotifySettings, Settings, StorageSettings
from tests.workflows.notifications._servers import CeleryWorker, RedisServer, SmsEndpoint, SmtpServer

T = TypeVar("T")
BACKOFF_S = 0.2
MAX_ATTEMPTS = 3


@dataclass
class Servers:
    smtp: SmtpServer
    sms: SmsEndpoint
    directory: Path

    def notify(self) -> NotifySettings:
        return NotifySettings(smtp_host="127.0.0.1", smtp_port=self.smtp.port, smtp_tls="starttls",
                              smtp_ca_file=self.smtp.cert, smtp_from="Infirmary <no-reply@hospital.test>",
                              sms_url=f"{self.sms.url}/send", sms_token="gateway-secret", reminder_offsets="24h,2h")


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    directory = tmp_path_factory.mktemp("notify-servers")
    smtp = SmtpServer(directory)
    smtp.controller.start()
    sms = SmsEndpoint()
    sms.start()
    try:
        yield Servers(smtp, sms, directory)
    finally:
        sms.stop()
        smtp.controller.stop()


@dataclass
class CeleryBackend:
    redis: RedisServer
    data_dir: Path
    settings: Settings


@pytest.fixture(scope="session")
def celery_backend(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryBackend]:
    directory = tmp_path_factory.mktemp("celery")
    redis = RedisServer(directory)
    settings = _settings(directory, servers, backend="celery", redis_url=redis.url)
    env = {**os.environ, **_environment(settings)}
    worker = CeleryWorker(env, directory / "worker.log")
    try:
        from fhir_server.jobs.celery_app import create_celery

        worker.wait_ready(create_celery(settings))
        yield CeleryBackend(redis, directory, settings)
    finally:
        worker.stop()
        redis.stop()


def _settings(directory: Path, servers: Servers, backend: str, redis_url: str = "redis://127.0.0.1:1/0") -> Settings:
    return Settings(data_dir=directory, storage=StorageSettings(sqlite_path=directory / "test.db"),
                    jobs=JobsSettings(backend=backend, redis_url=redis_url, backoff_s=BACKOFF_S,  # type: ignore[arg-type]
                                      max_attempts=MAX_ATTEMPTS),
                    notify=servers.notify())


def _environment(settings: Settings) -> dict[str, str]:
    n, j = settings.notify, settings.jobs
    return {
        "FHIR_DATA_DIR": str(settings.data_dir), "FHIR_STORAGE__SQLITE_PATH": str(settings.sqlite_file()),
        "FHIR_AUTH__ENABLED": "false", "FHIR_JOBS__BACKEND": "celery", "FHIR_JOBS__REDIS_URL": j.redis_url,
        "FHIR_JOBS__BACKOFF_S": str(j.backoff_s), "FHIR_JOBS__MAX_ATTEMPTS": str(j.max_attempts),
        "FHIR_NOTIFY__SMTP_HOST": str(n.smtp_host), "FHIR_NOTIFY__SMTP_PORT": str(n.smtp_port),
        "FHIR_NOTIFY__SMTP_TLS": n.smtp_tls, "FHIR_NOTIFY__SMTP_CA_FILE": str(n.smtp_ca_file),
        "FHIR_NOTIFY__SMTP_FROM": n.smtp_from, "FHIR_NOTIFY__SMS_URL": str(n.sms_url),
        "FHIR_NOTIFY__SMS_TOKEN": n.sms_token.get_secret_value() if n.sms_token else "",
        "FHIR_NOTIFY__REMINDER_OFFSETS": n.reminder_offsets,
    }


@dataclass
class Harness:
    kind: str
    app: Any
    client: httpx.AsyncClient
    clock: ManualClock
    servers: Servers

    @property
    def smtp(self) -> SmtpServer:
        return self.servers.smtp

    @property
    def sms(self) -> SmsEndpoint:
        return self.servers.sms

    async def settle(self) -> None:
        if self.kind == "inprocess":
            await asyncio.wait_for(self.app.state.fhir.runner.idle(), 20)

    async def advance(self, seconds: float) -> None:
        """Move time on; what became due is then sent (the sweep runs with the new time)."""
        self.clock.advance(seconds)
        if self.kind == "celery":
            await self.app.state.fhir.jobs.enqueue("notifications.sweep", self.clock.now())
        await self.settle()

    async def eventually(self, check: Callable[[], Awaitable[T]], within_s: float = 20) -> T:
        """``check()`` once it is truthy (in-process: after everything due has run)."""
        deadline = time.monotonic() + within_s
        while True:
            await self.settle()
            value = await check()
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.05 if self.kind == "celery" else 0.01)

    async def search(self, query: str) -> list[dict[str, Any]]:
        r = await self.client.get(query)
        assert r.status_code == 200, r.text
        return [e["resource"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"]

    async def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created


@pytest.fixture(params=["inprocess", "celery"])
async def harness(request: pytest.FixtureRequest, servers: Servers, tmp_path: Path) -> AsyncIterator[Harness]:
    from fhir_server.app import create_app

    if request.param == "celery":
        settings = request.getfixturevalue("celery_backend").settings
    else:
        settings = _settings(tmp_path, servers, backend="inprocess")
    clock = ManualClock(time.time())
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
            h = Harness(request.param, app, client, clock, servers)
            await h.settle()
            yield h


def unique() -> str:
    return uuid.uuid4().hex[:10]


def phone() -> str:
    return "+3460" + str(uuid.uuid4().int)[:7]

"""Fixtures for the Subscription tests: an app with short retry settings, a real HTTP receiver, a running server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fhir_server.settings import Settings, StorageSettings, SubscriptionSettings
from tests.workflows.subscriptions.receiver import Receiver

FAST = SubscriptionSettings(allow_http_loopback=True, retry_backoff_s=0.1, retry_backoff_max_s=0.4,
                            index_refresh_s=0, websocket_heartbeat_s=0.3)
LOINC = "http://loinc.org"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"), subscriptions=FAST)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def observation(code: str, patient: str = "p1", **extra: Any) -> bytes:
    return json.dumps({"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": LOINC, "code": code}]},
                       "subject": {"reference": f"Patient/{patient}"}, **extra}).encode()


def subscription(criteria: str, channel: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"resourceType": "Subscription", "status": "requested", "reason": "test",
                       "criteria": criteria, "channel": channel, **extra}).encode()


FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def wait_status(client: httpx.AsyncClient, sub_id: str, status: str, within: float = 10.0,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body: dict[str, Any] = (await client.get(f"Subscription/{sub_id}", headers=headers)).json()
        if body.get("status") == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Subscription/{sub_id} stayed {body.get('status')!r} ({body.get('error')!r}), "
                                 f"expected {status!r}")
        await asyncio.sleep(0.02)


class Running:
    """The app served by uvicorn on an ephemeral port, in the test's event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio"))
        self.task: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/fhir/$websocket"

    async def __aenter__(self) -> Running:
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 (uvicorn only offers a flag)
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task
        self.sock.close()

"""Websocket subscribers hear writes committed by other processes through the store's change feed: two app
instances on one SQLite file stand for two server processes (each its own writer connection, post-write
reactions and websocket hub)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from fhir_server.settings import Settings, StorageSettings
from tests.workflows.subscriptions.conftest import FAST, FHIR_JSON, LOINC, Running, observation, subscription


@asynccontextmanager
async def _process(db: Path, feed: float = 0.05) -> AsyncIterator[Any]:
    from fhir_server.app import create_app

    settings = Settings(data_dir=db.parent, storage=StorageSettings(sqlite_path=db),
                        subscriptions=FAST.model_copy(update={"websocket_feed_s": feed}))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir")


async def _messages(ws: ClientConnection, seconds: float) -> list[str]:
    """Everything but heartbeats received within ``seconds``."""
    out: list[str] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            message = str(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        if message != "heartbeat":
            out.append(message)
    return out


async def _bound(app: Any, http: httpx.AsyncClient) -> str:
    created = await http.post("Subscription", content=subscription(
        f"Observation?code={LOINC}|1234-5", {"type": "websocket"}), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_write_committed_by_another_process_reaches_the_bound_subscriber(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with _process(db) as here, _process(db) as other, Running(here) as server, \
            _client(here) as http_here, _client(other) as http_other:
        sub_id = await _bound(here, http_here)
        async with connect(server.ws) as ws:
            await ws.send(f"bind {sub_id}")
            assert await _messages(ws, 0.3) == [f"bound {sub_id}"]

            # the other process knows nothing of the Subscription (its index refresh is off in these settings):
            # only the feed of this process can tell the subscriber
            assert (await http_other.post("Observation", content=observation("9999-9"),
                                          headers=FHIR_JSON)).status_code == 201
            assert (await http_other.post("Observation", content=observation("1234-5"),
                                          headers=FHIR_JSON)).status_code == 201
            assert await _messages(ws, 1.0) == [f"ping {sub_id}"]

            # a write of this process: one ping (the post-write reaction), not a second from the feed
            assert (await http_here.post("Observation", content=observation("1234-5"),
                                         headers=FHIR_JSON)).status_code == 201
            assert await _messages(ws, 1.0) == [f"ping {sub_id}"]

            # a deletion by the other process is not notified
            written = await http_other.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert await _messages(ws, 1.0) == [f"ping {sub_id}"]
            assert (await http_other.delete(f"Observation/{written.json()['id']}")).status_code in (200, 204)
            assert await _messages(ws, 0.5) == []


async def test_a_subscriber_hears_only_what_is_written_after_it_binds(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with _process(db) as here, _process(db) as other, Running(here) as server, \
            _client(here) as http_here, _client(other) as http_other:
        sub_id = await _bound(here, http_here)
        for _ in range(3):  # committed while nobody is bound here
            await http_other.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
        await asyncio.sleep(0.2)  # several feed rounds pass with nobody bound
        async with connect(server.ws) as ws:
            await ws.send(f"bind {sub_id}")
            assert await _messages(ws, 0.6) == [f"bound {sub_id}"]  # no replay of the earlier writes
            await http_other.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert await _messages(ws, 1.0) == [f"ping {sub_id}"]


async def test_without_the_feed_other_processes_writes_are_not_heard(tmp_path: Path) -> None:
    """The control: the ping above comes from the feed (``websocket_feed_s = 0`` turns it off)."""
    db = tmp_path / "shared.db"
    async with _process(db, feed=0) as here, _process(db, feed=0) as other, Running(here) as server, \
            _client(here) as http_here, _client(other) as http_other:
        sub_id = await _bound(here, http_here)
        async with connect(server.ws) as ws:
            await ws.send(f"bind {sub_id}")
            assert await _messages(ws, 0.3) == [f"bound {sub_id}"]
            await http_other.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert await _messages(ws, 0.6) == []

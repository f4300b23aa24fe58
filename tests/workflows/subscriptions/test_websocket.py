"""The R4 websocket channel against a running server: bind → bound, ping on each matching event, heartbeat
(must-show 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.workflows.subscriptions.conftest import (
    FHIR_JSON,
    LOINC,
    Running,
    observation,
    subscription,
    wait_status,
)


async def _next_event(ws: ClientConnection, within: float = 5.0) -> str:
    """The next message that is not a heartbeat."""
    while True:
        message = str(await asyncio.wait_for(ws.recv(), within))
        if message != "heartbeat":
            return message


async def test_websocket_subscriber_receives_events(app: Any) -> None:
    async with Running(app) as server, httpx.AsyncClient(base_url=server.base) as http:
        created = await http.post("Subscription", content=subscription(
            f"Observation?code={LOINC}|1234-5", {"type": "websocket"}), headers=FHIR_JSON)
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        await wait_status(http, sub_id, "active")  # no handshake for websockets: active at once

        async with connect(server.ws) as ws:
            await ws.send("bind nope")
            assert await _next_event(ws) == "error nope no such Subscription"
            await ws.send(f"bind {sub_id}")
            assert await _next_event(ws) == f"bound {sub_id}"

            await http.post("Observation", content=observation("9999-9"), headers=FHIR_JSON)  # not matching
            await http.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert await _next_event(ws) == f"ping {sub_id}"
            await http.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert await _next_event(ws) == f"ping {sub_id}"
            assert str(await asyncio.wait_for(ws.recv(), 2.0)) == "heartbeat"  # nothing else: the heartbeat

            off = (await http.get(f"Subscription/{sub_id}")).json()
            off["status"] = "off"
            assert (await http.put(f"Subscription/{sub_id}", json=off)).status_code == 200
            await http.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            await http.post("Observation", content=observation("1234-5"), headers=FHIR_JSON)
            assert str(await asyncio.wait_for(ws.recv(), 2.0)) == "heartbeat"  # no ping once it is off

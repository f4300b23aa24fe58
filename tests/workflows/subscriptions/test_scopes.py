"""Scopes on Subscriptions, with real tokens (authorization on): a patient subscribes to ``Observation?`` and
hears about its own Observations only; the stamp that records its access cannot be forged; websocket binding
needs a token that may read the Subscription."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fhir_server import jsonio
from fhir_server.auth.audit import OPERATION_SYSTEM
from fhir_server.auth.stamps import ACCESS_URL, OWNER_URL
from fhir_server.settings import AuthSettings, ServerSettings, Settings, StorageSettings
from fhir_server.workflows.subscriptions.service import CHECK
from tests.auth.conftest import FHIR, World, login_and_fetch, oauth_client
from tests.auth.conftest import world as world
from tests.workflows.subscriptions.conftest import (
    FAST,
    FHIR_JSON,
    Running,
    observation,
    subscription,
    wait_status,
)
from tests.workflows.subscriptions.receiver import Receiver

PATIENT_SCOPE = "openid fhirUser launch/patient patient/*.cruds"


@pytest.fixture
def auth_settings(tmp_path: Path) -> Settings:
    # the tokens are issued for http://localhost/fhir; the websocket test reaches the server at 127.0.0.1:port
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    auth=AuthSettings(allow_http_jwks_uri=True, jwks_cache_s=0), subscriptions=FAST,
                    server=ServerSettings(base_url=FHIR))


async def _token(world: World, username: str) -> dict[str, str]:
    async with oauth_client(world, scope=PATIENT_SCOPE) as client:
        token = await login_and_fetch(world, client, username)
    return {"Authorization": f"Bearer {token['access_token']}"}


@pytest.fixture
async def fhir(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with world.http() as http:
        http.base_url = httpx.URL(FHIR + "/")
        yield http


async def test_patient_hears_only_about_what_it_may_read(world: World, fhir: httpx.AsyncClient,
                                                         receiver: Receiver) -> None:
    alice, bob = await _token(world, "alice"), await _token(world, "bob")
    forged = {"url": ACCESS_URL, "valueString": json.dumps({"sub": "x", "client_id": "x", "kind": "system",
                                                             "scope": "system/*.rs"})}
    created = await fhir.post("Subscription", headers={**alice, **FHIR_JSON}, content=subscription(
        "Observation?", {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
        extension=[forged, {"url": OWNER_URL, "valueReference": {"reference": "Patient/pat-b"}}]))
    assert created.status_code == 201, created.text
    sub = created.json()
    stamps = {e["url"]: e for e in sub["extension"]}
    assert stamps[OWNER_URL]["valueReference"]["reference"] == "Patient/pat-a"  # the writer, not the claim
    assert json.loads(stamps[ACCESS_URL]["valueString"])["kind"] == "patient"
    await receiver.wait_for(1)
    await wait_status(fhir, sub["id"], "active", headers=alice)
    # bob may not see alice's Subscription
    assert (await fhir.get(f"Subscription/{sub['id']}", headers=bob)).status_code == 404

    bobs = await fhir.post("Observation", headers={**bob, **FHIR_JSON}, content=observation("1234-5", "pat-b"))
    assert bobs.status_code == 201, bobs.text
    alices = await fhir.post("Observation", headers={**alice, **FHIR_JSON}, content=observation("1234-5", "pat-a"))
    assert alices.status_code == 201, alices.text
    requests = await receiver.wait_for(2)
    await asyncio.sleep(0.3)
    notified = [json.loads(r.body)["id"] for r in requests[1:]]
    assert notified == [alices.json()["id"]]  # never bob's

    # each check is audited in the patient's record, with the Subscription's writer (alice) as agent
    checks = await _check_events(world)
    assert sorted((e["entity"][0]["what"]["reference"], e["outcome"]) for e in checks) == [
        ("Patient/pat-a", "0"), ("Patient/pat-b", "4")]
    assert {e["agent"][0]["who"]["identifier"]["value"] for e in checks} == {"u-alice"}
    assert {x["what"]["reference"] for e in checks for x in e["entity"]} >= {
        f"Observation/{alices.json()['id']}", f"Observation/{bobs.json()['id']}"}


async def _check_events(world: World) -> list[dict[str, Any]]:
    fhir = world.app.state.fhir
    await fhir.security.audit_writer.flush()
    ids = await fhir.repo.find(fhir.resources.criteria("AuditEvent", f"subtype={OPERATION_SYSTEM}|job:{CHECK}"),
                               limit=100)
    return [jsonio.loads((await fhir.repo.read("AuditEvent", id)).body) for id in ids]


async def test_websocket_needs_a_token_that_may_read_the_subscription(world: World, fhir: httpx.AsyncClient
                                                                      ) -> None:
    alice, bob = await _token(world, "alice"), await _token(world, "bob")
    created = await fhir.post("Subscription", headers={**alice, **FHIR_JSON},
                              content=subscription("Observation?", {"type": "websocket"}))
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    async with Running(world.app) as server:
        with pytest.raises(InvalidStatus):  # no token: refused at the upgrade
            async with connect(server.ws):
                pass
        async with connect(server.ws, additional_headers=bob) as ws:
            await ws.send(f"bind {sub_id}")
            assert await ws.recv() == f"error {sub_id} no such Subscription"
        async with connect(server.ws, additional_headers=alice) as ws:
            await ws.send(f"bind {sub_id}")
            assert await ws.recv() == f"bound {sub_id}"
            await fhir.post("Observation", headers={**bob, **FHIR_JSON}, content=observation("1", "pat-b"))
            await fhir.post("Observation", headers={**alice, **FHIR_JSON}, content=observation("2", "pat-a"))
            assert await asyncio.wait_for(ws.recv(), 5) == f"ping {sub_id}"
            message: Any = await asyncio.wait_for(ws.recv(), 2)
            assert message == "heartbeat"  # bob's Observation caused no ping

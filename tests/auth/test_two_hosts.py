"""Two API hosts behind a load balancer, one MongoDB (FHIR data and auth state): whatever host a request lands on,
refresh tokens, revocations, client-assertion replay protection and signing keys are the same."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from fhir_server.auth.clients import build_client
from fhir_server.auth.mongo_store import MongoAuthStore
from fhir_server.auth.sqlite_store import LISTS_RECHECK_S
from fhir_server.settings import AuthSettings, Settings, StorageSettings
from tests.auth.conftest import (
    FHIR,
    REVOKE,
    TOKEN,
    World,
    login_and_fetch,
    oauth_client,
    post_form,
    seed_world,
)
from tests.auth.test_backend_services import _assertion, _form, _public
from tests.mongo_server import mongo_target


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[tuple[World, World]]:
    from fhir_server.app import create_app

    target = mongo_target()
    database = f"hosts{uuid.uuid4().hex[:12]}"
    url = f"{target.url.rstrip('/')}/{database}"
    worlds: list[World] = []
    try:
        async with AsyncExitStack() as stack:
            for name in ("a", "b"):
                settings = Settings(
                    data_dir=tmp_path / name,  # nothing shared through the disk
                    storage=StorageSettings(backend="mongodb", mongodb_url=url,
                                            mongodb_require_transactions=target.transactions),
                    auth=AuthSettings(audit_writer="inprocess"))
                app = create_app(settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                if not worlds:
                    worlds.append(await seed_world(app))
                else:
                    worlds.append(World(app, app.state.auth, httpx.ASGITransport(app=app)))
            assert all(isinstance(w.service.store, MongoAuthStore) for w in worlds)
            yield worlds[0], worlds[1]
    finally:
        admin: MongoClient[dict[str, object]] = MongoClient(target.url)
        admin.drop_database(database)
        admin.close()


async def _read_patient(world: World, access_token: str) -> int:
    async with world.http() as http:
        response = await http.get(f"{FHIR}/Patient/pat-a", headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code


async def _refused_within_recheck(world: World, access_token: str) -> bool:
    deadline = time.monotonic() + LISTS_RECHECK_S + 2.0
    while time.monotonic() < deadline:
        if await _read_patient(world, access_token) == 401:
            return True
        await asyncio.sleep(LISTS_RECHECK_S / 5)
    return False


async def test_tokens_issued_on_one_host_work_and_die_on_the_other(hosts: tuple[World, World]) -> None:
    a, b = hosts
    async with oauth_client(a) as client:
        token = await login_and_fetch(a, client, "alice")
    assert await _read_patient(b, token["access_token"]) == 200  # signed by A's key, validated on B
    # the refresh token issued by A is redeemed on B, and rotated there: A refuses the old one
    refreshed = await post_form(b, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                           "refresh_token": token["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert await _read_patient(a, fresh["access_token"]) == 200
    replayed = await post_form(a, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                          "refresh_token": token["refresh_token"]})
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    # the replay ended the whole grant, on both hosts
    assert await _refused_within_recheck(b, fresh["access_token"])
    assert await _refused_within_recheck(a, fresh["access_token"])

    async with oauth_client(a) as client:
        other = await login_and_fetch(a, client, "alice")
    assert await _read_patient(b, other["access_token"]) == 200  # cached as valid on B
    revoked = await post_form(a, REVOKE, {"token": other["access_token"], "client_id": "app"})
    assert revoked.status_code == 200
    assert await _refused_within_recheck(b, other["access_token"])  # revoked on A: refused on B


async def test_assertions_and_keys_are_shared_between_hosts(hosts: tuple[World, World]) -> None:
    from joserfc.jwk import RSAKey

    a, b = hosts
    key = RSAKey.generate_key(2048, {"kid": "ops-1"}, private=True)
    ops, _ = build_client(client_id="lab", name="ops", auth_method="private_key_jwt",
                          scope="system/Patient.rs infirmary/admin", grant_types=["client_credentials"],
                          jwks=_public(key))
    a.service.store.add_client(ops)
    assertion = _assertion(key, "RS384", jti=f"once-{uuid.uuid4().hex}")
    first = await post_form(a, TOKEN, _form(assertion, "system/Patient.rs infirmary/admin"))
    assert first.status_code == 200, first.text
    replay = await post_form(b, TOKEN, _form(assertion, "system/Patient.rs"))  # the same assertion on host B
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]

    admin_token = first.json()["access_token"]
    async with a.http() as http:
        rotated = await http.post("/auth/admin/keys/rotate", headers={"Authorization": f"Bearer {admin_token}"})
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    second = await post_form(a, TOKEN, _form(_assertion(key, "RS384", jti=f"two-{uuid.uuid4().hex}"),
                                             "system/Patient.rs"))
    signed_after = second.json()["access_token"]
    assert _kid(signed_after) == new_kid != _kid(admin_token)
    assert await _read_patient(b, signed_after) == 200  # A's new key is accepted on B at once
    assert await _read_patient(b, admin_token) == 200  # and the retired one still is
    async with b.http() as http:
        jwks = (await http.get("/auth/jwks")).json()
    assert new_kid in {k["kid"] for k in jwks["keys"]} and _kid(admin_token) in {k["kid"] for k in jwks["keys"]}


def _kid(token: str) -> str:
    from joserfc.jws import extract_compact

    return str(extract_compact(token.encode()).headers()["kid"])


def test_the_auth_store_follows_the_storage_backend_unless_set(tmp_path: Path) -> None:
    from fhir_server.auth.keys import FileKeyStore
    from fhir_server.auth.mongo_keys import MongoKeyStore
    from fhir_server.auth.service import build_keys, build_store
    from fhir_server.auth.sqlite_store import SQLiteAuthStore

    mongo = StorageSettings(backend="mongo", mongodb_url="mongodb://db1,db2/clinic?replicaSet=rs")
    chosen = build_store(Settings(data_dir=tmp_path, storage=mongo))
    assert isinstance(chosen, MongoAuthStore) and chosen.database_name == "clinic"
    assert isinstance(build_keys(Settings(storage=mongo), chosen).store, MongoKeyStore)
    apart = build_store(Settings(storage=mongo, auth=AuthSettings(mongodb_database="auth")))
    assert isinstance(apart, MongoAuthStore) and apart.database_name == "auth"
    local = build_store(Settings(data_dir=tmp_path, storage=mongo, auth=AuthSettings(store="sqlite")))
    assert isinstance(local, SQLiteAuthStore) and local.path == tmp_path / "auth.db"
    assert isinstance(build_keys(Settings(data_dir=tmp_path), local).store, FileKeyStore)
    assert isinstance(build_store(Settings(data_dir=tmp_path)), SQLiteAuthStore)
    shared = build_store(Settings(data_dir=tmp_path, auth=AuthSettings(store="mongodb")))
    assert isinstance(shared, MongoAuthStore) and shared.database_name == "infirmary"


def test_the_cli_manages_the_shared_store(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fhir_server.cli import main

    target = mongo_target()
    database = f"cli{uuid.uuid4().hex[:12]}"
    env = {"FHIR_STORAGE__BACKEND": "mongodb", "FHIR_STORAGE__MONGODB_URL": f"{target.url.rstrip('/')}/{database}"}
    runner = CliRunner()
    added = runner.invoke(main, ["clients", "add", "--name", "Portal", "--client-id", "portal", "--scope",
                                 "launch/patient patient/*.rs", "--redirect-uri", "https://p.example.org/cb",
                                 "--data-dir", str(tmp_path)], env=env)
    assert added.exit_code == 0, added.output
    store = MongoAuthStore(target.url, database=database)  # what every API host reads
    store.open()
    try:
        found = store.get_client("portal")
        assert found is not None and found.redirect_uris == ("https://p.example.org/cb",)
        removed = runner.invoke(main, ["clients", "remove", "portal", "--data-dir", str(tmp_path)], env=env)
        assert removed.exit_code == 0 and store.get_client("portal") is None
        assert store.is_revoked(["client:portal"])
        assert not (tmp_path / "auth.db").exists()
    finally:
        store.drop()
        store.close()


async def test_an_unreachable_auth_store_is_a_503_not_a_500(hosts: tuple[World, World]) -> None:
    """Host B loses MongoDB: a request with a valid token is answered 503 with an OperationOutcome (retry later),
    not an unhandled 500; host A is unaffected."""
    a, b = hosts
    async with oauth_client(a) as client:
        token = await login_and_fetch(a, client, "alice")
    assert await _read_patient(b, token["access_token"]) == 200
    store = b.service.store
    assert isinstance(store, MongoAuthStore) and store._client is not None
    store._client.close()  # every later operation of B's auth store raises
    await asyncio.sleep(LISTS_RECHECK_S * 2)  # past the cached revocation list's recheck
    async with b.http() as http:
        response = await http.get(f"{FHIR}/Patient/pat-a", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 503, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "transient"
    # the token endpoint too: a refresh needs the store, and is told to come back, not a 500
    refresh = await post_form(b, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                         "refresh_token": token["refresh_token"]})
    assert refresh.status_code == 503, refresh.text
    assert await _read_patient(a, token["access_token"]) == 200

"""The server on the MongoDB backend (``FHIR_STORAGE__BACKEND=mongodb``): the REST API end to end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from fhir_server.app import build_repository
from fhir_server.settings import Settings, StorageSettings
from fhir_server.storage.mongo.repository import MongoRepository
from tests.factories import make_patient
from tests.mongo_server import MongoTarget, mongo_target


@pytest.fixture
async def mongo_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, MongoTarget]]:
    from fhir_server.app import create_app

    target = mongo_target()
    database = f"app{uuid.uuid4().hex[:12]}"
    settings = Settings(data_dir=tmp_path, storage=StorageSettings(
        backend="mongodb", mongodb_url=f"{target.url.rstrip('/')}/{database}",
        mongodb_require_transactions=target.transactions))
    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
                yield client, target
    finally:
        admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(target.url)
        await admin.drop_database(database)
        await admin.close()


def test_settings_choose_the_backend_and_its_url() -> None:
    settings = Settings(storage=StorageSettings(backend="mongodb", mongodb_url="mongodb://db1,db2/clinic?replicaSet=rs"))
    repo = build_repository(settings)
    assert isinstance(repo, MongoRepository)
    assert repo.database_name == "clinic" and repo.transactions
    alias = build_repository(Settings(storage=StorageSettings(backend="mongo")))
    assert isinstance(alias, MongoRepository) and alias.database_name == "infirmary"


async def test_rest_on_mongodb(mongo_client: tuple[httpx.AsyncClient, MongoTarget]) -> None:
    client, _ = mongo_client
    created = await client.post("/Patient", json=make_patient(name=[{"family": "Okafor", "given": ["Ada"]}]))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["etag"] == 'W/"1"'
    read = await client.get(f"/Patient/{pid}")
    assert read.status_code == 200 and read.json()["name"][0]["family"] == "Okafor"

    body = read.json()
    body["name"][0]["family"] = "Okafor-Bello"
    updated = await client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    stale = await client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412

    for family in ("Adams", "Zhou"):
        assert (await client.post("/Patient", json=make_patient(name=[{"family": family}]))).status_code == 201
    found = await client.get("/Patient", params={"family": "okafor", "_total": "accurate"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [pid] and found.json()["total"] == 1
    page = await client.get("/Patient", params={"_sort": "-family", "_count": "2"})
    families = [e["resource"]["name"][0]["family"] for e in page.json()["entry"]]
    assert families == ["Zhou", "Okafor-Bello"]
    next_url = next(link["url"] for link in page.json()["link"] if link["relation"] == "next")
    rest = await client.get(next_url)
    assert [e["resource"]["name"][0]["family"] for e in rest.json()["entry"]] == ["Adams"]

    history = await client.get(f"/Patient/{pid}/_history")
    assert [e["response"]["etag"] for e in history.json()["entry"]] == ['W/"2"', 'W/"1"']
    old = await client.get(f"/Patient/{pid}/_history/1")
    assert old.status_code == 200 and old.json()["name"][0]["family"] == "Okafor"

    mrn = make_patient()["identifier"][0]
    conditional = {"If-None-Exist": f"identifier={mrn['system']}|{mrn['value']}"}
    first = await client.post("/Patient", json=make_patient(identifier=[mrn]), headers=conditional)
    second = await client.post("/Patient", json=make_patient(identifier=[mrn]), headers=conditional)
    assert first.status_code == 201 and second.status_code == 200
    assert second.headers["location"] == first.headers["location"]

    deleted = await client.delete(f"/Patient/{pid}")
    assert deleted.status_code in (200, 204)
    assert (await client.get(f"/Patient/{pid}")).status_code == 410

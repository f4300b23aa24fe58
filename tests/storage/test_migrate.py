"""``infirmary migrate``: the official example corpus, SQLite → MongoDB → SQLite, with nothing lost.

The corpus is loaded through the REST API into a SQLite store, a tenth of it updated and a few deleted (so there
are several versions and deletions), copied to MongoDB (``FHIR_TEST_MONGODB_URL`` or the emulator) and from there,
with the command line, to a second SQLite store.  Every version (id, version, lastUpdated, method, exact body),
the creation order, the search index rows and search answers must be the same at the end as at the start.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pymongo import AsyncMongoClient

from fhir_server.cli import main
from fhir_server.search.model import Clause, SearchQuery, SortKey, StringValue, TokenValue
from fhir_server.settings import Settings, StorageSettings
from fhir_server.storage.base import Repository, SearchRequest
from fhir_server.storage.migrate import MigrationError, Store, migrate
from fhir_server.storage.mongo.repository import MongoRepository
from fhir_server.storage.sqlite._index_rows import TABLES
from fhir_server.storage.sqlite.repository import SQLiteRepository
from tests.conformance._corpus_store import load, read_examples
from tests.conftest_shared import shared_dir
from tests.mongo_server import mongo_target

FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def _load_corpus(data_dir: Path, shared: Path) -> int:
    from fhir_server.app import create_app

    settings = Settings(data_dir=data_dir, storage=StorageSettings(sqlite_path=data_dir / "a.db"))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
            examples = read_examples(shared)
            loaded = await load(client, examples)
            stored = [e for e in examples if e.file not in loaded.rejected]
            for example in stored[::10]:  # a second version
                r = await client.put(f"/{example.resource_type}/{example.id}", content=example.raw,
                                     headers=FHIR_JSON)
                assert r.status_code == 200, r.text
            for example in stored[5::97]:  # deleted (some after a second version)
                assert (await client.delete(f"/{example.resource_type}/{example.id}")).status_code in (200, 204)
            return len(stored)


def _resource_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM resources").fetchone()[0])
    finally:
        conn.close()


def _versions(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT r.type, r.id, v.version, v.last_updated, v.method, v.body FROM versions v "
            "JOIN resources r ON r.rid = v.rid ORDER BY r.type, r.id, v.version").fetchall()
    finally:
        conn.close()


def _current(path: Path) -> list[tuple[Any, ...]]:
    """(type, id, version, deleted) of every resource, in creation order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, id, version, deleted FROM resources ORDER BY rid").fetchall()
    finally:
        conn.close()


def _index_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every index row with its resource and parameter named instead of numbered."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in TABLES:
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})") if c[1] not in ("pid", "rid")]
            cols = ", ".join(f"x.{c}" for c in columns)
            out[table] = sorted(conn.execute(
                f"SELECT r.type, r.id, p.code, {cols} FROM {table} x JOIN resources r ON r.rid = x.rid "
                f"JOIN search_params p ON p.pid = x.pid").fetchall(), key=repr)
        out["fulltext"] = sorted(conn.execute(
            "SELECT r.type, r.id, f.text, f.content FROM fulltext f JOIN resources r ON r.rid = f.rowid").fetchall())
        return out
    finally:
        conn.close()


QUERIES = [
    SearchQuery("Patient", sort=(SortKey("family", "string"),)),
    SearchQuery("Observation", (Clause("code", "token", (TokenValue("http://loinc.org", None),)),)),
    SearchQuery("Patient", (Clause("name", "string", (StringValue("pe", "pe"),)),)),
    SearchQuery("Observation", sort=(SortKey("_lastUpdated", "lastUpdated", True),)),
]


async def _answers(repo: Repository) -> list[tuple[list[str], int | None]]:
    await repo.open()
    try:
        out = []
        for query in QUERIES:
            page = await repo.search(SearchRequest(query, 30))
            out.append(([f"{v.id}/{v.version}/{v.last_updated}" for v in page.matches], page.total))
        return out
    finally:
        await repo.close()


def test_example_corpus_round_trips_sqlite_mongodb_sqlite(tmp_path: Path) -> None:
    shared = shared_dir()
    if shared is None:
        pytest.skip("the official example corpus (../shared) is not here")
    target = mongo_target()
    loaded = asyncio.run(_load_corpus(tmp_path, shared))
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    database = f"migrate{uuid.uuid4().hex[:12]}"
    url = f"{target.url.rstrip('/')}/{database}"
    settings = Settings(data_dir=tmp_path, storage=StorageSettings(
        mongodb_require_transactions=target.transactions))
    try:
        there = asyncio.run(migrate(f"sqlite:{a}", url, settings))
        versions = _versions(a)
        assert there.versions == len(versions) > loaded
        # the examples and what the server's workflows made of them (Slots from PractitionerRoles, reminders …)
        current = _resource_count(a)  # deleted ones too
        assert there.resources == current >= loaded and 0 < there.deleted < loaded // 50
        with pytest.raises(MigrationError, match="not empty"):
            asyncio.run(migrate(f"sqlite:{a}", url, settings))

        env = {"FHIR_STORAGE__MONGODB_REQUIRE_TRANSACTIONS": str(target.transactions).lower()}
        result = CliRunner().invoke(main, ["migrate", "--from", url, "--to", f"sqlite:{b}"], env=env)
        assert result.exit_code == 0, result.output
        assert f"copied {len(versions)} versions of {current} resources" in result.output

        assert _versions(b) == versions  # every version: id, number, time, method, exact bytes
        assert _current(b) == _current(a)  # deleted stay deleted; creation order kept
        assert _index_rows(b) == _index_rows(a)  # indexed again, the same entries
        mongo = MongoRepository(url, transactions=target.transactions)
        answers = asyncio.run(_answers(SQLiteRepository(a)))
        assert answers == asyncio.run(_answers(mongo)) == asyncio.run(_answers(SQLiteRepository(b)))
        assert all(ids for ids, _ in answers)
    finally:
        asyncio.run(_drop(target.url, database))


async def _drop(url: str, database: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await client.drop_database(database)
    await client.close()


def test_store_specs() -> None:
    assert Store.parse("sqlite:/var/lib/x.db") == Store("sqlite", "/var/lib/x.db")
    store = Store.parse("mongodb://user:secret@db1,db2/clinic?replicaSet=rs0")
    assert store.kind == "mongodb" and "secret" not in store.describe()
    for bad in ("sqlite:", "postgres://x", "/var/lib/x.db"):
        with pytest.raises(MigrationError):
            Store.parse(bad)
    result = CliRunner().invoke(main, ["migrate", "--from", "sqlite:/tmp/x.db", "--to", "sqlite:/tmp/x.db"])
    assert result.exit_code != 0 and "same store" in result.output

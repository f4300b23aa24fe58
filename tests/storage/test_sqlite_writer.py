"""The SQLite writer's batching: index rows inserted with multi-row INSERTs, searches inside a write that see the
rows written before them, and conditional look-ups run inline on the event loop under a step budget."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fhir_server.indexing.entries import ReferenceEntry
from fhir_server.search.model import Chain, Clause, Has, Not, SearchQuery, TokenValue
from fhir_server.storage.base import IndexEntries, TokenEntry, WriteOp
from fhir_server.storage.sqlite import repository as sqlite_repository
from fhir_server.storage.sqlite._index_rows import INSERT, TABLES, FulltextOp, apply_fulltext, flush_rows
from fhir_server.storage.sqlite._schema import connect, initialise
from fhir_server.storage.sqlite._tx import _reads_own_type_only
from fhir_server.storage.sqlite.repository import SQLiteRepository

SYS = "urn:mrn"
CODES = "http://loinc.org"


def _random_row(table: str, rng: random.Random) -> tuple[Any, ...]:
    """A row for ``table`` drawn from a small value space, so that duplicates (ignored) occur."""
    small = lambda: rng.choice(["", "a", "b", "c"])  # noqa: E731
    num = lambda: float(rng.randint(0, 3))  # noqa: E731
    pid, rid, grp = rng.randint(1, 3), rng.randint(1, 5), rng.randint(0, 1)
    return {
        "idx_string": (pid, small(), small(), rid, grp),
        "idx_token": (pid, small(), small(), rid, grp, small(), small(), small()),
        "idx_date": (pid, num(), num(), rid, grp),
        "idx_number": (pid, num(), num(), num(), rid, grp),
        "idx_quantity": (pid, small(), small(), num(), num(), num(), rid, grp, small(), small(),
                         rng.choice([None, 1.0]), rng.choice([None, 2.0]), rng.choice([None, 3.0])),
        "idx_reference": (pid, small(), small(), rid, grp, small(), small(), small(), small()),
        "idx_uri": (pid, small(), rid, grp),
    }[table]


def _dump(conn: sqlite3.Connection) -> list[list[tuple[Any, ...]]]:
    return [sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES]


@pytest.mark.parametrize("seed", range(6))
def test_multi_row_inserts_store_exactly_what_one_insert_per_row_stores(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    fast, plain = connect(tmp_path / "fast.db", 1000), connect(tmp_path / "plain.db", 1000)
    for conn in (fast, plain):
        initialise(conn)
        conn.execute("BEGIN")  # one transaction each: no fsync per row
    for _ in range(4):  # several flushes into the same tables: earlier rows make later ones duplicates
        rows = {t: [_random_row(t, rng) for _ in range(rng.choice([0, 1, 3, 64, 65, 130, 200]))] for t in TABLES}
        for table, table_rows in rows.items():
            for row in table_rows:
                plain.execute(INSERT[table], row)
        flush_rows(fast, {t: list(r) for t, r in rows.items()})
    for conn in (fast, plain):
        conn.execute("COMMIT")
    assert _dump(fast) == _dump(plain)
    assert any(_dump(fast))


@pytest.mark.parametrize("seed", range(4))
def test_batched_full_text_changes_end_as_one_change_at_a_time_does(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    fast, plain = connect(tmp_path / "fast.db", 1000), connect(tmp_path / "plain.db", 1000)
    for conn in (fast, plain):
        initialise(conn)
        conn.execute("BEGIN")
    present: set[int] = set()
    ops: list[FulltextOp] = []
    for _ in range(300):  # runs of inserts and deletes of varied lengths, as updates and deletes make them
        rid = rng.randint(1, 120)
        if rid in present:
            ops.append((rid,))
            present.discard(rid)
        else:
            ops.append((rid, f"narrative {rid} {rng.random()}", f"content {rng.choice(['alpha', 'beta'])}"))
            present.add(rid)
    for op in ops:
        if len(op) == 1:
            plain.execute("DELETE FROM fulltext WHERE rowid = ?", op)
        else:
            plain.execute("INSERT INTO fulltext (rowid, text, content) VALUES (?, ?, ?)", op)
    apply_fulltext(fast, ops)
    for term in ("alpha", "beta", "narrative"):
        query = "SELECT rowid FROM fulltext WHERE fulltext MATCH ? ORDER BY rowid"
        assert fast.execute(query, (term,)).fetchall() == plain.execute(query, (term,)).fetchall()
    everything = "SELECT rowid, text, content FROM fulltext ORDER BY rowid"
    assert fast.execute(everything).fetchall() == plain.execute(everything).fetchall()
    assert len(present) == len(fast.execute(everything).fetchall()) > 0


def test_which_searches_read_only_their_own_type() -> None:
    token = Clause("identifier", "token", (TokenValue(SYS, "x"),))
    assert _reads_own_type_only(token) and _reads_own_type_only(Not(token))
    assert not _reads_own_type_only(Chain("subject", ("Patient",), token))
    assert not _reads_own_type_only(Has("Observation", "subject", token))
    assert not _reads_own_type_only(Clause("_list", "list", ()))
    assert not _reads_own_type_only(Not(Chain("subject", ("Patient",), token)))


def _patient(id: str, mrn: str | None) -> WriteOp:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id}
    index = IndexEntries()
    if mrn:
        resource["identifier"] = [{"system": SYS, "value": mrn}]
        index.tokens.append(TokenEntry("identifier", SYS, mrn))
    return WriteOp("update", "Patient", id=id, resource=resource, index=index)


def _observation(id: str, subject: str, code: str) -> WriteOp:
    resource = {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": CODES, "code": code}]}, "subject": {"reference": subject}}
    index = IndexEntries(tokens=[TokenEntry("code", CODES, code)],
                         references=[ReferenceEntry("subject", *subject.split("/"))])
    return WriteOp("create", "Observation", id=id, resource=resource, index=index)


@pytest.fixture
async def repo(tmp_path: Path) -> Any:
    repository = SQLiteRepository(tmp_path / "w.db")
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()


async def test_a_conditional_create_sees_a_resource_of_its_type_written_before_it(repo: SQLiteRepository) -> None:
    again = _patient("second", "M1")
    again.method = "create"
    again.if_none_exist = SearchQuery("Patient", (Clause("identifier", "token", (TokenValue(SYS, "M1"),)),))
    first, second = await repo.write([_patient("first", "M1"), again])
    assert first.created and second.noop and second.id == "first"


async def test_a_chained_condition_sees_rows_of_another_type_written_before_it(repo: SQLiteRepository) -> None:
    await repo.write([_observation("o1", "Patient/p1", "1-1")])  # its subject gets an identifier later
    chained = _observation("o2", "Patient/p1", "1-1")
    chained.if_none_exist = SearchQuery("Observation", (Chain(
        "subject", ("Patient",), Clause("identifier", "token", (TokenValue(SYS, "CH"),))),))
    _, outcome = await repo.write([_patient("p1", "CH"), chained])
    assert outcome.noop and outcome.id == "o1"  # the Patient's identifier, written in the same write, matched


async def test_a_has_condition_sees_rows_of_another_type_written_before_it(repo: SQLiteRepository) -> None:
    await repo.write([_patient("p2", None)])
    conditional = _patient("p3", None)
    conditional.method = "create"
    conditional.if_none_exist = SearchQuery("Patient", (Has(
        "Observation", "subject", Clause("code", "token", (TokenValue(CODES, "2-2"),))),))
    _, outcome = await repo.write([_observation("o3", "Patient/p2", "2-2"), conditional])
    assert outcome.noop and outcome.id == "p2"


async def test_look_ups_run_inline_and_move_to_the_pool_past_their_budget(
        repo: SQLiteRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    await repo.write([_patient(f"b{i}", f"B{i % 3}") for i in range(300)])
    query = SearchQuery("Patient", (Not(Clause("identifier", "token", (TokenValue(SYS, "B0"),))),))
    pooled: list[int] = []
    real_query = repo._query

    async def counted(fn: Any) -> Any:
        pooled.append(1)
        return await real_query(fn)

    monkeypatch.setattr(repo, "_query", counted)
    small = SearchQuery("Patient", (Clause("identifier", "token", (TokenValue(SYS, "B1"),)),))
    assert len(await repo.find(small, limit=2)) == 2 and not pooled  # inline
    expected = await repo.find(query, limit=250)
    monkeypatch.setattr(sqlite_repository, "INLINE_STEPS", 1_000)  # one check: the look-up is interrupted
    assert await repo.find(query, limit=250) == expected and len(expected) == 200
    assert await repo.find_many([(query, 250), (small, 5)]) == [expected, await repo.find(small, 5)]
    assert len(pooled) >= 2
    assert (await repo.read("Patient", "b1")) is not None  # the connection has no budget left on it
    pooled.clear()
    monkeypatch.setattr(sqlite_repository, "INLINE_STEPS", 50_000)
    monkeypatch.setattr(repo._writer, "waiting", 1)  # other requests' writes are waiting: leave the loop free
    assert len(await repo.find(small, limit=2)) == 2 and pooled == [1]

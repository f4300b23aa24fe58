"""The writer answers a conditional search from the plan's look-up only when that answer provably still holds:
no commit since (its own, or another connection's, seen through ``PRAGMA data_version``) and nothing written
earlier in the transaction that could change it.  Every other case searches, with the same outcome as before."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import ConcurrentChange
from fhir_server.search.matcher import Candidate, matches
from fhir_server.search.model import Clause, Not, SearchQuery, TokenValue
from fhir_server.storage.base import IndexEntries, TokenEntry, WriteOp
from fhir_server.storage.sqlite import _tx
from fhir_server.storage.sqlite._index_rows import ParamIds
from fhir_server.storage.sqlite._lookup_memo import LookupMemo, may_match
from fhir_server.storage.sqlite._schema import connect, initialise
from fhir_server.storage.sqlite._search_exec import find_ids
from fhir_server.storage.sqlite.repository import SQLiteRepository

SYS = "urn:mrn"


def _mrn(value: str, system: str = SYS) -> SearchQuery:
    return SearchQuery("Patient", (Clause("identifier", "token", (TokenValue(system, value),)),))


def _patient(id: str, mrn: str | None, method: str = "update") -> WriteOp:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id}
    index = IndexEntries()
    if mrn:
        resource["identifier"] = [{"system": SYS, "value": mrn}]
        index.tokens.append(TokenEntry("identifier", SYS, mrn))
    return WriteOp(method, "Patient", id=id, resource=resource, index=index)  # type: ignore[arg-type]


def _conditional_create(id: str, mrn: str, *, expect: str | None = None, planned: bool = False) -> WriteOp:
    op = _patient(id, mrn, "create")
    op.if_none_exist = _mrn(mrn)
    op.expect_resolved, op.expect_id = planned, expect
    return op


@pytest.fixture
async def repo(tmp_path: Path) -> Any:
    repository = SQLiteRepository(tmp_path / "m.db")
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[SearchQuery]:
    """The searches the writer runs inside its transactions."""
    ran: list[SearchQuery] = []
    real = find_ids

    def counted(conn: Any, ids: ParamIds, query: SearchQuery, limit: int) -> list[str]:
        ran.append(query)
        return real(conn, ids, query, limit)

    monkeypatch.setattr(_tx, "find_ids", counted)
    return ran


async def test_a_look_up_with_no_commit_since_is_not_searched_again(
        repo: SQLiteRepository, searches: list[SearchQuery]) -> None:
    await repo.write([_patient("p1", "A1")])
    assert await repo.find_many([(_mrn("A1"), 2), (_mrn("A2"), 2)]) == [["p1"], []]
    matched, created = await repo.write([_conditional_create("x1", "A1", expect="p1", planned=True),
                                         _conditional_create("x2", "A2", planned=True)])
    assert matched.noop and matched.id == "p1" and created.created and created.id == "x2"
    assert searches == []  # both answered from the look-up
    outcome, = await repo.write([_conditional_create("x3", "A3")])  # never looked up: searched
    assert outcome.created and searches == [_mrn("A3")]


async def test_a_look_up_is_used_once_and_not_after_the_writers_own_commit(
        repo: SQLiteRepository, searches: list[SearchQuery]) -> None:
    assert await repo.find(_mrn("B1")) == []
    await repo.write([_patient("other", "B1")])  # the writer's own commit: the look-up is stale
    with pytest.raises(ConcurrentChange):
        await repo.write([_conditional_create("b", "B1", expect=None, planned=True)])
    assert searches == [_mrn("B1")]
    assert await repo.read("Patient", "b") is None


async def test_a_commit_by_another_connection_between_look_up_and_write_is_seen(
        repo: SQLiteRepository, tmp_path: Path, searches: list[SearchQuery]) -> None:
    await repo.write([_patient("seed", "S0")])  # the writer has run a transaction (knows a data_version)
    assert await repo.find(_mrn("C1")) == []
    other = SQLiteRepository(tmp_path / "m.db")  # another server process on the same file
    await other.open()
    try:
        await other.write([_patient("theirs", "C1")])
    finally:
        await other.close()
    with pytest.raises(ConcurrentChange):  # planned on "no match": the plan is made again, as before this work
        await repo.write([_conditional_create("mine", "C1", expect=None, planned=True)])
    assert searches == [_mrn("C1")]
    assert await repo.find(_mrn("C1")) == ["theirs"]  # looked up again: now the match is found and kept
    outcome, = await repo.write([_conditional_create("mine", "C1", expect="theirs", planned=True)])
    assert outcome.noop and outcome.id == "theirs" and searches == [_mrn("C1")]


async def test_a_match_deleted_by_another_connection_is_seen(repo: SQLiteRepository, tmp_path: Path) -> None:
    await repo.write([_patient("gone", "D1")])
    assert await repo.find(_mrn("D1")) == ["gone"]
    other = SQLiteRepository(tmp_path / "m.db")
    await other.open()
    try:
        await other.write([WriteOp("delete", "Patient", id="gone")])
    finally:
        await other.close()
    with pytest.raises(ConcurrentChange):
        await repo.write([_conditional_create("new", "D1", expect="gone", planned=True)])


async def test_writes_earlier_in_the_same_write_make_the_writer_search(
        repo: SQLiteRepository, searches: list[SearchQuery]) -> None:
    await repo.write([_patient("e1", "E1"), _patient("e2", "E2")])
    assert await repo.find_many([(_mrn("E1"), 2), (_mrn("E2"), 2), (_mrn("E3"), 2)]) == [["e1"], ["e2"], []]
    # e1 loses its identifier, another Patient takes E3, e2 is deleted: each look-up is stale within the write
    first, second, third = _conditional_create("n1", "E1"), _conditional_create("n2", "E3"), _conditional_create(
        "n3", "E2")
    out = await repo.write([_patient("e1", "CHANGED"), first, _patient("z", "E3"), second,
                            WriteOp("delete", "Patient", id="e2"), third])
    assert out[1].created and out[1].id == "n1"
    assert out[3].noop and out[3].id == "z"
    assert out[5].created and out[5].id == "n3"
    assert searches == [_mrn("E1"), _mrn("E3"), _mrn("E2")]


async def test_a_write_of_the_type_that_cannot_match_does_not_make_the_writer_search(
        repo: SQLiteRepository, searches: list[SearchQuery]) -> None:
    await repo.write([_patient("seed", "S0")])  # the writer's first transaction never trusts a look-up
    assert await repo.find(_mrn("F1")) == []
    out = await repo.write([_patient("f0", "F0"), _conditional_create("f1", "F1", planned=True)])
    assert out[1].created and searches == []


def test_earlier_requests_of_the_same_batch_count(tmp_path: Path) -> None:
    """Group commit: requests of one batch share the transaction, so the second sees the first's write."""
    path = tmp_path / "b.db"
    conn = connect(path, 1000)
    initialise(conn)
    memo, ids = LookupMemo(), ParamIds()
    tx = _tx.TxWriter(conn, ids, memo)
    conn.execute("BEGIN IMMEDIATE")
    tx.begin()
    memo.record(memo.stamp(), _mrn("G1"), 2, [])  # looked up with no match, at the current generation
    tx.apply([_patient("g", "G1")])  # request 1 of the batch
    out = tx.apply([_conditional_create("g2", "G1")])  # request 2: must see request 1's Patient
    conn.execute("COMMIT")
    assert out[0].noop and out[0].id == "g"
    conn.close()


def test_the_memo_answers_only_at_the_generation_it_was_recorded_at() -> None:
    memo = LookupMemo()
    memo.record(memo.stamp(), _mrn("H1"), 3, ["a", "b", "c"])
    assert memo.take(_mrn("H1")) == ["a", "b"]  # what a search with the writer's limit (2) returns
    assert memo.take(_mrn("H1")) is None  # used once
    stamp = memo.stamp()
    memo.advance()
    memo.record(stamp, _mrn("H1"), 2, [])  # a look-up that started before the commit
    assert memo.take(_mrn("H1")) is None
    memo.record(memo.stamp(), _mrn("H1"), 1, [])  # limit 1 cannot tell one match from several
    assert memo.take(_mrn("H1")) is None


def test_a_transaction_after_another_connections_commit_advances_the_generation(tmp_path: Path) -> None:
    path = tmp_path / "dv.db"
    conn, other = connect(path, 1000), connect(path, 1000)
    initialise(conn)
    memo = LookupMemo()
    tx = _tx.TxWriter(conn, ParamIds(), memo)
    for commit_by_other, advanced in ((False, True), (False, False), (True, True), (False, False)):
        if commit_by_other:
            other.execute("INSERT INTO store_meta (key, value) VALUES ('x', 'y')")
        before = memo.generation
        conn.execute("BEGIN IMMEDIATE")
        tx.begin()  # the first transaction always advances: nothing is known of the time before it
        conn.execute("COMMIT")
        assert (memo.generation > before) == advanced
    conn.close()
    other.close()


_CODES = ["a", "b", "A", "", "c"]


def _random_entries(rng: random.Random) -> IndexEntries:
    return IndexEntries(tokens=[
        TokenEntry(rng.choice(["identifier", "code"]), rng.choice([None, SYS, "s2"]), rng.choice([None, *_CODES]),
                   None, rng.choice([None, "ts"]), rng.choice([None, "MR"]))
        for _ in range(rng.randint(0, 3))])


def _random_clause(rng: random.Random) -> Clause | Not:
    values = tuple(TokenValue(rng.choice([None, "", SYS]), rng.choice([None, *_CODES]),
                              rng.choice([None, "ts"]), rng.choice([None, "MR"])) for _ in range(rng.randint(1, 2)))
    clause = Clause(rng.choice(["identifier", "code"]), "token", values, rng.choice([None, None, "of-type", "text"]))
    return Not(clause) if rng.random() < 0.15 else clause


@pytest.mark.parametrize("seed", range(4))
async def test_may_match_is_false_only_for_what_neither_sqlite_nor_the_matcher_matches(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    repository = SQLiteRepository(tmp_path / f"p{seed}.db")
    await repository.open()
    try:
        stored = {f"r{i}": _random_entries(rng) for i in range(30)}
        await repository.write([WriteOp("update", "Patient", id=id, resource={"resourceType": "Patient", "id": id},
                                        index=entries) for id, entries in stored.items()])
        excluded = 0
        for _ in range(60):
            query = SearchQuery("Patient", tuple(_random_clause(rng) for _ in range(rng.randint(1, 2))))
            found = set(await repository.find(query, limit=100))
            for id, entries in stored.items():
                if not may_match(query, entries):
                    excluded += 1
                    assert id not in found, (query, entries)
                    assert not matches(query.criteria, Candidate("Patient", id, 0.0, entries))
        assert excluded > 100  # the property is not vacuous
    finally:
        await repository.close()

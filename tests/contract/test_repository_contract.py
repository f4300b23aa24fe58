"""The Repository contract: what every storage backend must do, tested through the interface only."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server import jsonio
from fhir_server.errors import Conflict, InvalidRequest, PreconditionFailed
from fhir_server.search.model import Clause, SearchQuery, TokenValue
from fhir_server.storage.base import HistoryQuery, IndexEntries, Repository, TokenEntry, WriteOp

SYS = "urn:mrn"


def patient(id: str, mrn: str | None = None, **extra: object) -> WriteOp:
    resource: dict[str, object] = {"resourceType": "Patient", "id": id, **extra}
    index = IndexEntries()
    if mrn:
        resource["identifier"] = [{"system": SYS, "value": mrn}]
        index.tokens.append(TokenEntry("identifier", SYS, mrn))
    return WriteOp("update", "Patient", id=id, resource=resource, index=index)


def by_mrn(mrn: str) -> SearchQuery:
    return SearchQuery("Patient", (Clause("identifier", "token", (TokenValue(SYS, mrn),)),),
                       applied=(("identifier", f"{SYS}|{mrn}"),))


async def test_create_read_vread_and_meta(repo: Repository) -> None:
    op = patient("a", "M1")
    op.method = "create"
    (out,) = await repo.write([op])
    assert out.status == 201 and out.created and out.version is not None
    stored = await repo.read("Patient", "a")
    assert stored is not None and stored.version == 1 and not stored.deleted
    assert stored.body is not None
    body = jsonio.loads(stored.body)
    assert body["meta"] == {"versionId": "1", "lastUpdated": stored.last_updated}
    assert list(body)[:3] == ["resourceType", "id", "meta"]
    assert await repo.read("Patient", "zz") is None
    assert await repo.vread("Patient", "a", 2) is None
    assert (await repo.vread("Patient", "a", 1)) == stored


async def test_create_of_existing_id_conflicts(repo: Repository) -> None:
    op = patient("dup")
    op.method = "create"
    await repo.write([op])
    op2 = patient("dup")
    op2.method = "create"
    with pytest.raises(Conflict):
        await repo.write([op2])


async def test_update_delete_and_history(repo: Repository) -> None:
    await repo.write([patient("h", active=True)])
    await repo.write([patient("h", active=False)])
    (deleted,) = await repo.write([WriteOp("delete", "Patient", id="h")])
    assert deleted.version is not None and deleted.version.version == 3
    stored = await repo.read("Patient", "h")
    assert stored is not None and stored.deleted and stored.body is None
    (again,) = await repo.write([WriteOp("delete", "Patient", id="h")])
    assert again.noop
    (back,) = await repo.write([patient("h")])
    assert back.status == 201 and back.version is not None and back.version.version == 4
    page = await repo.history(HistoryQuery("Patient", "h"))
    assert [e.version.version for e in page.entries] == [4, 3, 2, 1]
    assert [e.version.method for e in page.entries] == ["update", "delete", "update", "update"]
    assert page.total == 4


async def test_write_is_atomic(repo: Repository) -> None:
    good = patient("atom-1")
    bad = patient("atom-2")
    bad.if_match = 5  # stale: fails
    with pytest.raises(PreconditionFailed):
        await repo.write([good, bad])
    assert await repo.read("Patient", "atom-1") is None
    assert (await repo.history(HistoryQuery("Patient"))).total == 0


async def test_failed_request_does_not_disturb_concurrent_ones(repo: Repository) -> None:
    async def ok(i: int) -> object:
        return await repo.write([patient(f"c{i}")])

    async def failing() -> object:
        op = patient("c-bad")
        op.if_match = 3
        return await repo.write([op])

    results = await asyncio.gather(*(ok(i) for i in range(20)), failing(), return_exceptions=True)
    assert sum(isinstance(r, PreconditionFailed) for r in results) == 1
    assert await repo.count("Patient") == 20


async def test_if_match(repo: Repository) -> None:
    await repo.write([patient("m")])
    op = patient("m")
    op.if_match = 1
    (out,) = await repo.write([op])
    assert out.version is not None and out.version.version == 2
    stale = patient("m")
    stale.if_match = 1
    with pytest.raises(PreconditionFailed):
        await repo.write([stale])


async def test_conditional_create_update_delete_rules(repo: Repository) -> None:
    create = patient("x1", "C1")
    create.method, create.if_none_exist = "create", by_mrn("C1")
    (first,) = await repo.write([create])
    assert first.status == 201
    again = patient("x2", "C1")
    again.method, again.if_none_exist = "create", by_mrn("C1")
    (second,) = await repo.write([again])
    assert second.status == 200 and second.noop and second.id == "x1"

    upd = patient("ignored", "C1")
    upd.id, upd.match = None, by_mrn("C1")
    upd.resource = {k: v for k, v in (upd.resource or {}).items() if k != "id"}
    (u,) = await repo.write([upd])
    assert u.id == "x1" and u.version is not None and u.version.version == 2

    new = patient("unused", "C9")
    new.id, new.match, new.create_id = None, by_mrn("C9"), "fresh-id"
    new.resource = {k: v for k, v in (new.resource or {}).items() if k != "id"}
    (n,) = await repo.write([new])
    assert n.status == 201 and n.id == "fresh-id"

    clash = patient("other", "C1")
    clash.id, clash.match = None, by_mrn("C1")
    with pytest.raises(InvalidRequest):
        await repo.write([clash])

    await repo.write([patient("y1", "MANY"), patient("y2", "MANY")])
    many = patient("z", "MANY")
    many.method, many.if_none_exist = "create", by_mrn("MANY")
    with pytest.raises(PreconditionFailed):
        await repo.write([many])
    with pytest.raises(PreconditionFailed):
        await repo.write([WriteOp("delete", "Patient", match=by_mrn("MANY"))])
    (none,) = await repo.write([WriteOp("delete", "Patient", match=by_mrn("NOPE"))])
    assert none.noop and none.status == 204
    (d,) = await repo.write([WriteOp("delete", "Patient", match=by_mrn("C9"))])
    assert d.id == "fresh-id"


async def test_find_uses_current_versions_only(repo: Repository) -> None:
    await repo.write([patient("f", "OLD")])
    await repo.write([patient("f", "NEW")])
    assert await repo.find(by_mrn("OLD")) == []
    assert await repo.find(by_mrn("NEW")) == ["f"]
    await repo.write([WriteOp("delete", "Patient", id="f")])
    assert await repo.find(by_mrn("NEW")) == []
    ids = SearchQuery("Patient", (Clause("_id", "id", (TokenValue(None, "f"),)),))
    assert await repo.find(ids) == []


async def test_history_paging_and_filters(repo: Repository) -> None:
    for i in range(7):
        await repo.write([patient(f"p{i}")])
    everything = await repo.history(HistoryQuery(count=100))
    assert everything.total == 7
    first = await repo.history(HistoryQuery(count=3))
    assert len(first.entries) == 3 and first.has_older and not first.has_newer
    second = await repo.history(HistoryQuery(count=3, before_seq=first.entries[-1].seq))
    assert second.has_newer and second.has_older
    back = await repo.history(HistoryQuery(count=3, after_seq=second.entries[0].seq))
    assert [e.seq for e in back.entries] == [e.seq for e in first.entries]
    cutoff = everything.entries[2].version.last_updated
    since = await repo.history(HistoryQuery(since=cutoff, count=100))
    assert since.total == 3

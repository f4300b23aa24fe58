"""The Repository contract: what every storage backend must do, tested through the interface only."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server import jsonio
from fhir_server.errors import ConcurrentChange, Conflict, InvalidRequest, PreconditionFailed
from fhir_server.indexing.entries import DateEntry, ReferenceEntry
from fhir_server.search.model import Clause, SearchQuery, TokenValue
from fhir_server.storage.base import (
    EverythingRequest,
    HistoryQuery,
    IndexEntries,
    NewResource,
    Repository,
    SharedIndex,
    StoredVersion,
    TokenEntry,
    WriteOp,
)

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


async def test_find_many_answers_each_query_as_find_does(repo: Repository) -> None:
    await repo.write([patient("m1", "FM-A"), patient("m2", "FM-B"), patient("m3", "FM-B"), patient("m4", "FM-B")])
    queries = [(by_mrn("FM-B"), 2), (by_mrn("FM-A"), 2), (by_mrn("FM-NONE"), 2), (by_mrn("FM-B"), 5)]
    found = await repo.find_many(queries)
    assert found == [await repo.find(q, limit) for q, limit in queries]
    assert found[1] == ["m1"] and found[2] == [] and sorted(found[3]) == ["m2", "m3", "m4"]
    assert len(found[0]) == 2
    assert await repo.find_many([]) == []


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


async def test_history_as_a_change_feed(repo: Repository) -> None:
    """``after_seq`` without a total, as the websocket change feed reads it: every version committed after a
    position, deletions included, in commit order; the same page as with the total."""
    await repo.write([patient("f0")])
    (start,) = (await repo.history(HistoryQuery(count=1, total=False))).entries
    await repo.write([patient("f1")])
    await repo.write([patient("f0", active=False)])
    await repo.write([WriteOp("delete", "Patient", id="f1")])
    page = await repo.history(HistoryQuery(count=10, after_seq=start.seq, total=False))
    assert page.total is None
    feed = sorted(page.entries, key=lambda e: e.seq)
    assert [(e.version.id, e.version.version, e.version.method) for e in feed] == [
        ("f1", 1, "update"), ("f0", 2, "update"), ("f1", 2, "delete")]
    assert feed[-1].version.body is None
    counted = await repo.history(HistoryQuery(count=10, after_seq=start.seq))
    assert counted.total == 4 and counted.entries == page.entries
    assert (await repo.history(HistoryQuery(count=10, after_seq=feed[-1].seq, total=False))).entries == []


# -- everything in a compartment (Patient/$everything) -----------------------------------------------------

LINKS = {"Observation": ("subject", "performer"), "Encounter": ("patient",), "Patient": ("link",)}
FOLLOW = {"Patient": ("general-practitioner", "link"), "Observation": ("subject", "performer", "encounter"),
          "Encounter": ("patient", "participant")}
CARE = {"Observation": "date", "Encounter": "date"}


def indexed(rtype: str, id: str, refs: tuple[tuple[str, str, str], ...] = (),
            dates: tuple[tuple[str, float, float], ...] = ()) -> WriteOp:
    index = IndexEntries(references=[ReferenceEntry(code, t, i) for code, t, i in refs],
                         dates=[DateEntry(code, low, high) for code, low, high in dates])
    return WriteOp("update", rtype, id=id, resource={"resourceType": rtype, "id": id}, index=index)


def names(versions: list[StoredVersion]) -> list[str]:
    return [f"{v.resource_type}/{v.id}" for v in versions]


async def everything_store(repo: Repository) -> None:
    await repo.write([
        indexed("Practitioner", "dr"),
        indexed("Patient", "a", refs=(("general-practitioner", "Practitioner", "dr"),)),
        indexed("Patient", "b"),
        indexed("Encounter", "ea", refs=(("patient", "Patient", "a"), ("participant", "Practitioner", "dr3")),
                dates=(("date", 100.0, 200.0),)),
        indexed("Encounter", "eb", refs=(("patient", "Patient", "b"),)),
        indexed("Observation", "oa", refs=(("subject", "Patient", "a"), ("encounter", "Encounter", "eb"),
                                           ("performer", "Practitioner", "dr2"))),
        indexed("Practitioner", "dr2"),
        indexed("Practitioner", "dr3"),
        indexed("Practitioner", "unused"),
        indexed("Observation", "ob", refs=(("subject", "Patient", "b"), ("performer", "Patient", "a"))),
        indexed("Observation", "nobody", refs=(("performer", "Practitioner", "unused"),)),
    ])
    await repo.write([indexed("Observation", "late", refs=(("subject", "Patient", "a"),),
                              dates=(("date", 1000.0, 1001.0),))])


async def test_everything_members_includes_and_total(repo: Repository) -> None:
    await everything_store(repo)
    page = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE))
    assert names(page.matches) == ["Patient/a", "Encounter/ea", "Observation/oa", "Observation/ob",
                                   "Observation/late"]
    assert names(page.included) == ["Practitioner/dr", "Practitioner/dr2", "Practitioner/dr3"]
    assert page.total == 5 and page.next_cursor is None and page.previous_cursor is None
    other = await repo.everything(EverythingRequest("Patient", "b", LINKS, FOLLOW, CARE))
    assert names(other.matches) == ["Patient/b", "Encounter/eb", "Observation/ob"]
    assert other.included == []  # Patient/a (ob's performer) is in a compartment of its own
    assert (await repo.everything(EverythingRequest("Patient", "zz", LINKS, FOLLOW, CARE))).total == 0


async def test_everything_pages_with_a_cursor(repo: Repository) -> None:
    await everything_store(repo)
    whole = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE))
    for count in (1, 2, 3, 7):
        seen: list[str] = []
        cursor = None
        while True:
            page = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE, count=count,
                                                           cursor=cursor))
            assert len(page.matches) + len(page.included) <= count and page.total == 5
            seen.extend(names(page.matches) + names(page.included))
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == names(whole.matches) + names(whole.included)
    with pytest.raises(InvalidRequest):
        await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE, cursor="nonsense"))


async def test_everything_filters(repo: Repository) -> None:
    await everything_store(repo)
    ranged = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE,
                                                     care_start=150.0, care_end=900.0))
    # ea overlaps [150, 900); late is outside (and so is not counted); oa and ob have no care date
    assert names(ranged.matches) == ["Patient/a", "Encounter/ea", "Observation/oa", "Observation/ob"]
    assert ranged.total == 4
    early = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE, care_end=150.0))
    assert "Encounter/ea" in names(early.matches) and "Observation/late" not in names(early.matches)
    late = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE, care_start=200.0))
    assert "Encounter/ea" not in names(late.matches) and names(late.included) == ["Practitioner/dr",
                                                                                 "Practitioner/dr2"]
    stored = await repo.read("Observation", "late")
    assert stored is not None
    since = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE,
                                                    since=stored.last_updated))
    assert names(since.matches) == ["Observation/late"] and since.included == [] and since.total == 1
    typed = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE,
                                                    types=frozenset({"Encounter", "Practitioner"})))
    assert names(typed.matches) == ["Encounter/ea"]
    assert names(typed.included) == ["Practitioner/dr", "Practitioner/dr2", "Practitioner/dr3"]


async def test_everything_type_level_and_deletes(repo: Repository) -> None:
    await everything_store(repo)
    every = await repo.everything(EverythingRequest("Patient", None, LINKS, FOLLOW, CARE))
    assert names(every.matches) == ["Patient/a", "Patient/b", "Encounter/ea", "Encounter/eb", "Observation/oa",
                                    "Observation/ob", "Observation/late"]
    assert names(every.included) == ["Practitioner/dr", "Practitioner/dr2", "Practitioner/dr3"]
    assert every.total == 7  # no budget: counted exactly
    await repo.write([WriteOp("delete", "Observation", id="oa"), WriteOp("delete", "Patient", id="a")])
    every = await repo.everything(EverythingRequest("Patient", None, LINKS, FOLLOW, CARE))
    assert "Observation/oa" not in names(every.matches) and "Patient/a" not in names(every.matches)
    assert names(every.included) == ["Practitioner/dr3"]  # only ea, still linked to a, references it
    gone = await repo.everything(EverythingRequest("Patient", "a", LINKS, FOLLOW, CARE))
    assert names(gone.matches) == ["Encounter/ea", "Observation/ob", "Observation/late"]


def _booking(i: int, slot_version: int) -> list[WriteOp]:
    """What $book writes: the Slot taken (checked against the version read; implied) and an Appointment."""
    slot = WriteOp("update", "Slot", id="slot-1", resource={"resourceType": "Slot", "id": "slot-1", "status": "busy"},
                   index=IndexEntries(), if_match=slot_version, expect_resolved=True, expect_id="slot-1",
                   implied=True)
    appointment = WriteOp("create", "Appointment", id=f"appt-{i}",
                          resource={"resourceType": "Appointment", "id": f"appt-{i}", "status": "booked"},
                          index=IndexEntries())
    return [slot, appointment]


async def test_concurrent_bookings_of_one_version_exactly_one_wins(repo: Repository) -> None:
    await repo.write([WriteOp("update", "Slot", id="slot-1", index=IndexEntries(),
                              resource={"resourceType": "Slot", "id": "slot-1", "status": "free"})])
    results = await asyncio.gather(*(repo.write(_booking(i, 1)) for i in range(50)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, [r for r in results if isinstance(r, BaseException) and
                               not isinstance(r, ConcurrentChange)]
    assert all(isinstance(r, ConcurrentChange) for r in results if isinstance(r, BaseException))
    slot = await repo.read("Slot", "slot-1")
    assert slot is not None and slot.version == 2
    assert await repo.count("Appointment") == 1
    assert (await repo.history(HistoryQuery("Slot", "slot-1"))).total == 2


async def test_a_stale_booking_writes_nothing(repo: Repository) -> None:
    await repo.write([WriteOp("update", "Slot", id="slot-1", index=IndexEntries(),
                              resource={"resourceType": "Slot", "id": "slot-1", "status": "free"})])
    await repo.write(_booking(0, 1))
    with pytest.raises(ConcurrentChange) as caught:
        await repo.write(_booking(1, 1))
    assert caught.value.op_index == 0
    assert await repo.read("Appointment", "appt-1") is None
    assert await repo.count("Appointment") == 1


def _bulk(id: str, code: str, shared: SharedIndex | None) -> NewResource:
    resource = {"resourceType": "Basic", "code": {"coding": [{"system": SYS, "code": code}]}}
    return NewResource(id, resource, IndexEntries(tokens=[TokenEntry("identifier", SYS, id)]), shared)


def _by(code: str, value: str) -> SearchQuery:
    return SearchQuery("Basic", (Clause(code, "token", (TokenValue(SYS, value),)),), applied=((code, value),))


async def test_create_many_creates_new_ids_once_and_indexes_shared_entries(repo: Repository) -> None:
    shared = SharedIndex(b"k1", IndexEntries(tokens=[TokenEntry("code", SYS, "alike")]))
    other = SharedIndex(b"k2", IndexEntries(tokens=[TokenEntry("code", SYS, "other")]))
    assert await repo.create_many("Basic", [_bulk("b1", "alike", shared), _bulk("b2", "alike", shared),
                                            _bulk("b3", "other", other), _bulk("b4", "plain", None)]) == [True] * 4
    # an id already stored, and one twice in the same batch: created once, the rest still written
    again = [_bulk("b2", "alike", shared), _bulk("b5", "alike", shared), _bulk("b5", "alike", shared),
             _bulk("b6", "other", other)]
    assert await repo.create_many("Basic", again) == [False, True, False, True]
    assert await repo.count("Basic") == 6
    assert sorted(await repo.find(_by("code", "alike"), 10)) == ["b1", "b2", "b5"]
    assert sorted(await repo.find(_by("code", "other"), 10)) == ["b3", "b6"]
    assert await repo.find(_by("identifier", "b4"), 10) == ["b4"]  # a resource's own entries
    stored = await repo.read("Basic", "b5")
    assert stored is not None and stored.version == 1 and stored.method == "create"
    body = jsonio.loads(stored.body or b"")
    assert body["id"] == "b5" and body["meta"]["versionId"] == "1" and body["code"]["coding"][0]["code"] == "alike"
    assert await repo.create_many("Basic", []) == []

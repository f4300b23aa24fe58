"""The shared-part indexer gives exactly the entries of the full extraction, for every shape of AuditEvent the
server writes — with its cache cold or warm, and after the type's search parameters change."""

from __future__ import annotations

import random
from typing import Any

from fhir_server.auth.audit import RequestInfo, request_events
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.definitions import load_definitions
from fhir_server.indexing.extract import Indexer, search_param_from_resource
from fhir_server.indexing.shared_parts import SharedPartIndexer

LINKED = frozenset({"Patient", "Observation", "Condition", "Encounter"})
VARYING = frozenset({"recorded", "entity"})


def _contexts() -> list[AccessContext | None]:
    none = ScopeSet.parse("")
    return [
        None,
        AccessContext("lab", "lab", none, "system", "t", 0, 0),
        AccessContext("u-1", "portal", none, "patient", "t", 0, 0, fhir_user="Patient/p1", patient="p1"),
        AccessContext("u-2", "workspace", none, "staff", "t", 0, 0, fhir_user="Practitioner/d1",
                      roles=frozenset({"physician", "nurse"})),
    ]


def _events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        touches = [Touch(rng.choice(sorted(LINKED)), f"r{rng.randrange(50)}",
                         frozenset(f"p{rng.randrange(4)}" for _ in range(rng.randrange(0, 3))),
                         rng.choice("CRUDE"), rng.random() < 0.2) for _ in range(rng.randrange(0, 5))]  # type: ignore[arg-type]
        method, path = rng.choice([("GET", "Observation/r1"), ("GET", "Observation"), ("POST", ""),
                                   ("DELETE", "Condition/r2"), ("GET", "Patient/p1/$everything")])
        info = RequestInfo(method, path, rng.choice(["", "code=1234-5&_count=10"]), rng.choice([200, 201, 403, 500]),
                           rng.choice([None, "10.0.0.1", "::1"]))
        out += request_events(rng.choice(_contexts()), AccessRecord(touches), info, linked_types=LINKED,
                              break_glass=rng.random() < 0.1, now=1_700_000_000 + i * 0.37)
    for n, event in enumerate(out):
        event["id"] = f"ev-{n}"
    return out


def _canonical(entries: Any) -> list[list[str]]:
    return [sorted(map(repr, getattr(entries, kind))) for kind in
            ("strings", "tokens", "dates", "numbers", "quantities", "references", "uris", "composites")]


def test_equal_to_the_full_extraction() -> None:
    indexer = Indexer.from_definitions(load_definitions())
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    events = _events(random.Random(7), 400)
    for n, event in enumerate(events[:60]):  # parameters on elements most events lack (meta) are skipped for those
        event["meta"] = [{"tag": [{"system": "urn:t", "code": f"t{n % 3}"}]}, {"profile": ["urn:p"], "source": "urn:s"},
                         {"security": [{"system": "urn:s", "code": "R"}]}][n % 3]
    for event in events + events:  # the second round from a warm cache
        assert _canonical(shared.extract(event)) == _canonical(indexer.extract(event)), event
    assert any(e.param == "_tag" for e in shared.extract(events[0]).tokens)
    assert 0 < len(shared._cache) < len(events) / 2  # shared parts repeat
    assert shared._fixed and shared._rest  # both halves are in use


def test_a_new_search_parameter_is_indexed_at_once() -> None:
    indexer = Indexer.from_definitions(load_definitions())
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    event = _events(random.Random(3), 3)[0]
    shared.extract(event)
    indexer.add(search_param_from_resource({
        "resourceType": "SearchParameter", "url": "https://infirmary.example.org/sp/audit-outcome-desc",
        "code": "outcome-desc", "base": ["AuditEvent"], "type": "string", "status": "active",
        "expression": "AuditEvent.outcomeDesc"}))
    assert any(e.param == "outcome-desc" for e in shared.extract(event).strings)
    assert _canonical(shared.extract(event)) == _canonical(indexer.extract(event))


def test_cached_groups_follow_contained_resources() -> None:
    """``patient`` selects ``entity.what.where(resolve() is Patient)``: for a ``#id`` reference that depends on the
    contained resource, outside the ``entity`` element — two events with the same ``entity`` but different
    ``contained`` must not share entries."""
    indexer = Indexer.from_definitions(load_definitions())
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    base = _events(random.Random(11), 1)[0]
    entity = [{"what": {"reference": "#c1"}}, {"what": {"reference": "Patient/p9"}}]
    as_patient = {**base, "id": "a", "entity": entity, "contained": [{"resourceType": "Patient", "id": "c1"}]}
    as_device = {**base, "id": "b", "entity": entity, "contained": [{"resourceType": "Device", "id": "c1"}]}
    for event in (as_patient, as_device, as_patient, as_device):
        assert _canonical(shared.extract(event)) == _canonical(indexer.extract(event))
    patients = {e.url for e in shared.extract(as_patient).references if e.param == "patient"}
    assert "#c1" in patients
    assert "#c1" not in {e.url for e in shared.extract(as_device).references if e.param == "patient"}


def test_a_parameter_reading_the_whole_resource_is_neither_shared_nor_cached() -> None:
    """A parameter whose expression goes back to ``%resource`` reads outside its first element: it is not local,
    so neither shared (``agent`` does not vary, but what the first parameter selects depends on ``entity``) nor
    cached by its element (the second's depends on ``outcome``) — either would give one event's answer to another."""
    indexer = Indexer.from_definitions(load_definitions())
    for code, expression in (("agent-if-entity", "AuditEvent.agent.where(%resource.entity.exists()).who"),
                             ("entity-if-ok", "AuditEvent.entity.where(%resource.outcome = '0').what")):
        indexer.add(search_param_from_resource({
            "resourceType": "SearchParameter", "url": f"https://infirmary.example.org/sp/{code}", "code": code,
            "base": ["AuditEvent"], "type": "reference", "status": "active", "expression": expression}))
        compiled = indexer.plan("AuditEvent")[code]
        assert compiled.plain and not compiled.local and compiled.first_keys
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    base = _events(random.Random(5), 1)[0]
    base = {**base, "agent": [{"who": {"reference": "Practitioner/d1"}, "requestor": True}]}
    entity = [{"what": {"reference": "Patient/p1"}}]
    events = [{**base, "id": "a", "entity": entity, "outcome": "0"},
              {**base, "id": "b", "entity": entity, "outcome": "4"},
              {**{k: v for k, v in base.items() if k != "entity"}, "id": "c", "outcome": "0"}]
    for event in events + events:
        assert _canonical(shared.extract(event)) == _canonical(indexer.extract(event))
    found = [{(e.param, e.type, e.id) for e in shared.extract(event).references
              if e.param in ("agent-if-entity", "entity-if-ok")} for event in events]
    assert found == [{("agent-if-entity", "Practitioner", "d1"), ("entity-if-ok", "Patient", "p1")},
                     {("agent-if-entity", "Practitioner", "d1")}, set()]


def test_cached_groups_are_used() -> None:
    indexer = Indexer.from_definitions(load_definitions())
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    events = _events(random.Random(13), 300)
    for event in events:
        assert _canonical(shared.extract(event)) == _canonical(indexer.extract(event))
    sizes = {group.keys: len(group.cache) for group in shared._groups}
    assert 0 < sizes[("entity",)] < len(events)  # entities repeat between events

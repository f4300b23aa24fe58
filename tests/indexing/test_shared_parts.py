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

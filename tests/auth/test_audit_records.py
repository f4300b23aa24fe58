"""The audit writer process builds a line's AuditEvents with the repeating parts made once: what it builds equals
what :func:`request_events` builds for the same request, for every shape of request, cold and warm."""

from __future__ import annotations

import random
import uuid

from fhir_server.auth import _audit_records
from fhir_server.auth._audit_records import event_id, events_from_line, request_line
from fhir_server.auth.audit import RequestInfo, request_events
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.storage._meta import format_instant

LINKED = frozenset({"Patient", "Observation", "Condition", "Encounter"})
_NONE = ScopeSet.parse("")
CONTEXTS = [
    None,
    AccessContext("lab", "lab", _NONE, "system", "t", 0, 0),
    AccessContext("u-1", "portal", _NONE, "patient", "t", 0, 0, fhir_user="Patient/p1", patient="p1"),
    AccessContext("u-2", "workspace", _NONE, "staff", "t", 0, 0, fhir_user="Practitioner/d1",
                  roles=frozenset({"physician", "nurse"})),
    AccessContext("u-3", "workspace", _NONE, "staff", "t", 0, 0, fhir_user=None),
]
REQUESTS = [("GET", "Observation/r1"), ("GET", "Observation"), ("POST", ""), ("DELETE", "Condition/r2"),
            ("GET", "Patient/p1/$everything"), ("GET", "Patient/p2/Observation"), ("PUT", "Encounter/e1"),
            ("GET", "Observation/o1/_history/2"), ("POST", "Observation/_search"), ("GET", "$export"),
            ("POST", "$job/hl7.send_order"), ("GET", "AuditEvent"), ("GET", "Practitioner/d1"), ("PATCH", "Patient/p3"),
            ("GET", "Patient/$export-poll-status"), ("GET", "")]


def _request(rng: random.Random, i: int) -> tuple[AccessContext | None, AccessRecord, RequestInfo, bool, float]:
    touches = [Touch(rng.choice(sorted(LINKED | {"AuditEvent", "Practitioner"})), rng.choice([f"r{rng.randrange(9)}", ""]),
                     frozenset(f"p{rng.randrange(4)}" for _ in range(rng.randrange(0, 3))), rng.choice("CRUDE"),
                     rng.random() < 0.3) for _ in range(rng.choice([0, 1, 2, 5, 120]))]  # type: ignore[arg-type]
    method, path = rng.choice(REQUESTS)
    info = RequestInfo(method, path, rng.choice(["", "code=1234-5&_count=10"]),
                       rng.choice([200, 201, 204, 401, 403, 404, 500, 599]), rng.choice([None, "10.0.0.1", "::1"]))
    record = AccessRecord(touches, rng.choice([None, None, "transaction", "batch"]))
    when = rng.uniform(0, 4_000_000_000) if rng.random() < 0.5 else 1_700_000_000 + i * 0.000_37
    return rng.choice(CONTEXTS), record, info, rng.random() < 0.1, when


def test_events_equal_what_the_request_would_have_made() -> None:
    rng = random.Random(11)
    _audit_records._common_part.cache_clear()
    built = 0
    for i in range(3000):  # the caches fill up and are then hit
        context, record, info, break_glass, when = _request(rng, i)
        line = request_line(context, record, info, break_glass, when)
        expected = request_events(context, record, info, linked_types=LINKED, break_glass=break_glass,
                                  now=round(when * 1e6) / 1e6)
        events = events_from_line(line, LINKED)
        assert [{k: v for k, v in e.items() if k != "id"} for e in events] == expected, (context, record, info)
        assert [list(e) for e in events] == [[*e, "id"] for e in expected]  # the same key order (the same JSON)
        line_id = line.split(b'"r":"')[1].split(b'"')[0].decode()
        assert [e["id"] for e in events] == [str(uuid.uuid5(_audit_records._NAMESPACE, f"{line_id}/{n}"))
                                             for n in range(len(events))]
        built += len(events)
    assert built > 2000 and _audit_records._common_part.cache_info().hits > 300  # warm and cold both checked


def test_event_ids_and_instants_equal_the_general_functions() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        micro = rng.choice([rng.randrange(0, 4_102_444_800_000_000), 1_700_000_000_000_000 + rng.randrange(10**9)])
        assert _audit_records._instant(micro) == format_instant(micro / 1e6)
        line_id, n = f"{uuid.UUID(int=rng.getrandbits(128)).hex}.{rng.randrange(10**6)}", rng.randrange(200)
        assert event_id(line_id, n) == str(uuid.uuid5(_audit_records._NAMESPACE, f"{line_id}/{n}"))
    assert _audit_records._instant(0) == format_instant(0) == "1970-01-01T00:00:00.000000Z"


def test_extra_agents_are_appended_to_every_event_as_the_in_process_writer_does() -> None:
    rng = random.Random(23)
    sender = {"type": {"text": "HL7 v2 sending application"}, "requestor": False,
              "who": {"identifier": {"system": "urn:example:sender", "value": "LAB^LABFAC"}},
              "network": {"address": "10.1.2.3", "type": "2"}}
    checked = 0
    for i in range(500):
        context, record, info, break_glass, when = _request(rng, i)
        line = request_line(context, record, info, break_glass, when, extra_agents=(sender,))
        expected = request_events(context, record, info, linked_types=LINKED, break_glass=break_glass,
                                  now=round(when * 1e6) / 1e6)
        events = events_from_line(line, LINKED)
        assert [e["agent"] for e in events] == [[*e["agent"], sender] for e in expected]
        assert [{k: v for k, v in e.items() if k not in ("id", "agent")} for e in events] == \
            [{k: v for k, v in e.items() if k != "agent"} for e in expected]
        checked += len(events)
    assert checked > 300
    plain = events_from_line(request_line(*_request(random.Random(1), 0)), LINKED)
    assert all(sender not in e["agent"] for e in plain)  # the cached shared parts were not changed

"""The compact form of a request's audit facts, as the server sends it to the audit writer process.

Building AuditEvents (and indexing and storing them) is the expensive half of auditing; the request only records
who, what, when, where and the outcome in one short JSON line, and :func:`events_from_line` turns the line into
the AuditEvents that :func:`fhir_server.auth.audit.request_events` would have built in the request.  Event ids are
derived from the line's id (UUID v5), so a line sent twice (after the writer process restarted) makes the same
events, and the second copy is refused by the store as a duplicate instead of being written twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server import jsonio
from fhir_server.auth.audit import RequestInfo, request_events
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext

_NAMESPACE = uuid.UUID("4f1c2a9e-3b7d-5e60-9a41-8d2f0c6b7e15")
_NO_SCOPES = ScopeSet.parse("")


def request_line(context: AccessContext | None, record: AccessRecord, info: RequestInfo, break_glass: bool,
                 recorded: float) -> bytes:
    """One request's audit facts (no token, no body) as a JSON line."""
    who = None
    if context is not None:
        who = [context.subject, context.client_id, context.kind, context.fhir_user, sorted(context.roles)]
    line = {
        "r": uuid.uuid4().hex, "t": round(recorded * 1e6), "c": who,  # microseconds: an integer in JSON
        "x": [[t.resource_type, t.id, sorted(t.patients), t.action, t.denied] for t in record.touched],
        "i": [info.method, info.path, info.query, info.status, info.address], "n": record.interaction,
        "g": break_glass,
    }
    return jsonio.dumps(line) + b"\n"


def event_line(event: dict[str, Any]) -> bytes:
    """An AuditEvent built elsewhere (a break-glass grant), sent as it is (its id assigned here)."""
    event.setdefault("id", str(uuid.uuid4()))
    return jsonio.dumps({"e": event}) + b"\n"


def events_from_line(line: bytes, linked_types: frozenset[str]) -> list[dict[str, Any]]:
    """The AuditEvents of one line, with their ids."""
    data = jsonio.loads(line)
    if "e" in data:
        event: dict[str, Any] = data["e"]
        return [event]
    context = None
    if data["c"] is not None:
        subject, client_id, kind, fhir_user, roles = data["c"]
        context = AccessContext(subject=subject, client_id=client_id, scopes=_NO_SCOPES, kind=kind, token_id="",
                                issued_at=0, expires_at=0, fhir_user=fhir_user, roles=frozenset(roles))
    record = AccessRecord([Touch(t[0], t[1], frozenset(t[2]), t[3], t[4]) for t in data["x"]], data["n"])
    method, path, query, status, address = data["i"]
    events = request_events(context, record, RequestInfo(method, path, query, status, address),
                            linked_types=linked_types, break_glass=data["g"], now=int(data["t"]) / 1e6)
    for n, event in enumerate(events):
        event["id"] = str(uuid.uuid5(_NAMESPACE, f"{data['r']}/{n}"))
    return events

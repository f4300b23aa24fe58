"""The compact form of a request's audit facts, as the server sends it to the audit writer process.

Building AuditEvents (and indexing and storing them) is the expensive half of auditing; the request only records
who, what, when, where and the outcome in one short JSON line, and :func:`events_from_line` turns the line into
the AuditEvents that :func:`fhir_server.auth.audit.request_events` would have built in the request.  Event ids are
derived from the line's id (UUID v5), so a line sent twice (after the writer process restarted) makes the same
events, and the second copy is refused by the store as a duplicate instead of being written twice.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from fhir_server import jsonio
from fhir_server.auth.audit import Interaction, RequestInfo, _audited, _by_patient, _common, _event, classify
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext

_NAMESPACE = uuid.UUID("4f1c2a9e-3b7d-5e60-9a41-8d2f0c6b7e15")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_NO_SCOPES = ScopeSet.parse("")
RELOAD = b'{"reload":"SearchParameter"}\n'  # not an audit record: the store's SearchParameters changed
_counter = itertools.count()
_origin: tuple[int, str] = (0, "")


def _line_id() -> str:
    """Unique across processes and restarts: a random prefix per process (re-drawn after a fork) and a counter
    (a uuid4 per request costs more than the rest of the line)."""
    global _origin
    pid = os.getpid()
    if _origin[0] != pid:
        _origin = (pid, uuid.uuid4().hex)
    return f"{_origin[1]}.{next(_counter)}"


def request_line(context: AccessContext | None, record: AccessRecord, info: RequestInfo, break_glass: bool,
                 recorded: float, extra_agents: Sequence[dict[str, Any]] = ()) -> bytes:
    """One request's audit facts (no token, no body) as a JSON line; ``extra_agents`` are appended to every
    event's agents (the HL7 v2 sending application)."""
    who = None
    if context is not None:
        who = [context.subject, context.client_id, context.kind, context.fhir_user, sorted(context.roles)]
    line = {
        "r": _line_id(), "t": round(recorded * 1e6), "c": who,  # microseconds: an integer in JSON
        "x": [[t.resource_type, t.id, list(t.patients), t.action, t.denied] for t in record.touched],
        "i": [info.method, info.path, info.query, info.status, info.address], "n": record.interaction,
        "g": break_glass,
    }
    if extra_agents:
        line["a"] = list(extra_agents)
    return jsonio.dumps(line) + b"\n"


def event_line(event: dict[str, Any]) -> bytes:
    """An AuditEvent built elsewhere (a break-glass grant), sent as it is (its id assigned here)."""
    event.setdefault("id", str(uuid.uuid4()))
    return jsonio.dumps({"e": event}) + b"\n"


def events_from_line(line: bytes, linked_types: frozenset[str]) -> list[dict[str, Any]]:
    """The AuditEvents of one line, with their ids: what :func:`fhir_server.auth.audit.request_events` makes
    of the request, the parts that repeat between requests (agents, type, subtype, outcome) made once
    (tests/auth/test_audit_records.py)."""
    data = orjson.loads(line)  # a line of ours: no decimals to keep
    if "e" in data:
        event: dict[str, Any] = data["e"]
        return [event]
    record = AccessRecord([Touch(t[0], t[1], frozenset(t[2]), t[3], t[4]) for t in data["x"]], data["n"])
    method, path, query, status, address = data["i"]
    interaction = _classify(method, path, query)
    info = RequestInfo(method, path, query, status, address)
    by_patient = _by_patient(record)
    if not _audited(interaction, record, info, linked_types, bool(by_patient)):
        return []
    subtype = record.interaction or interaction.subtype
    who = data["c"]
    common = dict(_common_part(None if who is None else (*who[:4], tuple(who[4])), interaction, subtype, status,
                               address, data["g"]))
    common["recorded"] = _instant(int(data["t"]))
    events = [_event(common, info, patient, touches, subtype) for patient, touches in sorted(by_patient.items())]
    events = events or [_event(common, info, None, [], subtype)]
    extra = data.get("a")
    for n, event in enumerate(events):
        event["id"] = event_id(data["r"], n)
        if extra:
            event["agent"] = [*event["agent"], *extra]
    return events


_classify = functools.lru_cache(maxsize=4096)(classify)


@functools.lru_cache(maxsize=1024)
def _common_part(who: tuple[str, str, Any, str | None, tuple[str, ...]] | None, interaction: Interaction,
                 subtype: str, status: int, address: str | None, break_glass: bool) -> dict[str, Any]:
    """What the events of requests alike share, ``recorded`` left to fill in (its place in the key order kept).
    Shared between events, never changed: copied before anything is set."""
    context = None
    if who is not None:
        subject, client_id, kind, fhir_user, roles = who
        context = AccessContext(subject=subject, client_id=client_id, scopes=_NO_SCOPES, kind=kind, token_id="",
                                issued_at=0, expires_at=0, fhir_user=fhir_user, roles=frozenset(roles))
    return _common(context, RequestInfo("", "", "", status, address), subtype, interaction, "", break_glass)


def _instant(microseconds: int) -> str:
    """:func:`fhir_server.storage._meta.format_instant` of ``microseconds / 1e6``, the seconds formatted once."""
    seconds, fraction = divmod(microseconds, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def event_id(line_id: str, n: int) -> str:
    """``str(uuid.uuid5(_NAMESPACE, f"{line_id}/{n}"))``, without the UUID object."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{line_id}/{n}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

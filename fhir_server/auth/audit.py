"""AuditEvents: what every request touching patient data leaves behind, and how they reach the store.

**What is recorded** (one request → its events, built when the request ends):

* one AuditEvent per patient whose data the request read, wrote or was refused (IHE BALP style): its entities are
  the Patient (role *Patient*) and the resources of that patient the request touched (role *Domain Resource*, at
  most :data:`MAX_ENTITIES`), plus the search query for searches.  Such an event is in that patient's compartment
  (``AuditEvent.patient``), so a patient can see who accessed their record — and only their own events: the agent
  of a patient user is named by user id, not by a Patient reference, so a patient's attempts on another record
  are not in their own compartment;
* one AuditEvent without a patient when a request about patient data touched none (an empty search, an unknown
  id, an export download) or was refused before anything was read (no token: 401, no scope: 403);
* nothing for requests that touch no patient data (the CapabilityStatement, practitioners, value sets) and for
  reads of the audit trail itself.

Background work is audited as the request ``POST $job/<task name>`` of the jobs identity
(:meth:`fhir_server.auth.security.Security.acting`): operation code ``job:<task name>``, and no event at all when
it touched no patient data.

Who: the user (``agent.who``: the ``fhirUser`` reference for staff, the user id as identifier, roles), the client
application (a second agent, or the only one for Backend Services), the client address (``agent.network``).
What: ``type`` rest, ``subtype`` the FHIR interaction, ``action`` C/R/U/D/E.  When: ``recorded``.  Outcome: ``0``
success, ``4`` refused or client error, ``8`` server error.  Under break-glass, ``purposeOfEvent`` is
``v3-ActReason#BTG``.  No tokens and no request bodies are ever recorded.

**How they are written**: :class:`AuditWriter` queues events and a background task writes them through the
repository in batches (one atomic ``Repository.create_many`` of up to ``batch_max`` events), so a read costs no extra
synchronous write.  A full queue makes requests wait (never drops); a failing store is retried; events still
queued at shutdown go to a spool file (``<data_dir>/audit-spool.ndjson``, mode 0600) that the next start writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

from fhir_server import jsonio
from fhir_server.auth.guard import AccessRecord, Touch
from fhir_server.auth.policy import relative
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import FhirError
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import NewResource, Repository

log = logging.getLogger("fhir_server.audit")

MAX_ENTITIES = 100
USER_SYSTEM = "https://infirmary.example.org/fhir/sid/user"
CLIENT_SYSTEM = "https://infirmary.example.org/fhir/sid/client"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
OPERATION_SYSTEM = "https://infirmary.example.org/fhir/CodeSystem/operation"
BREAK_GLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG",
               "display": "break the glass"}
_REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
         "display": "RESTful Operation"}
_SECURITY_ALERT = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113",
                   "display": "Security Alert"}
_APPLICATION = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150",
                "display": "Application"}
_SOURCE = {"observer": {"display": "Infirmary FHIR server"},
           "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                     "display": "Application Server"}]}
_ENTITY_PERSON = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                  "display": "Person"}
_ENTITY_OBJECT = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2",
                  "display": "System Object"}
_ROLE_PATIENT = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
_ROLE_RESOURCE = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4",
                  "display": "Domain Resource"}
_ROLE_QUERY = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"}
_ROLE_USER = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"}

JOB_PATH = "$job"  # background work is audited as the request "POST $job/<task name>" (fhir_server.jobs)
JOB_PREFIX = "job:"  # … whose operation code is "job:<task name>"

_SEARCHES = frozenset({"search-type", "search-system", "search-compartment"})

#: what differs between the AuditEvents of one client's requests (the rest repeats: its index entries are cached,
#: fhir_server.indexing.shared_parts)
VARYING = frozenset({"recorded", "entity"})


@dataclass(frozen=True)
class RequestInfo:
    """The HTTP facts of one request (no body, no headers but the client address)."""

    method: str
    path: str  # below /fhir, without the leading slash: "Patient/123", "", "$export"
    query: str
    status: int
    address: str | None


@dataclass(frozen=True)
class Interaction:
    subtype: str  # a restful-interaction code
    action: str  # C R U D E
    resource_type: str | None  # the type the URL names (None: system level)
    operation: str | None = None  # "$everything", "$export", …


def classify(method: str, path: str, query: str) -> Interaction:
    """The FHIR interaction of a request under /fhir."""
    segments = [s for s in path.split("/") if s]
    operation = next((s for s in segments if s.startswith("$")), None)
    rtype = segments[0] if segments and segments[0][:1].isupper() else None
    if operation == JOB_PATH and len(segments) == 2:
        return Interaction("operation", "E", None, JOB_PREFIX + segments[1])
    if operation is not None:
        return Interaction("operation", "E", rtype, operation.split("-", 1)[0] if operation.startswith(
            "$export") else operation)
    n = len(segments)
    if method in ("GET", "HEAD"):
        if "_history" in segments:
            if n >= 4:
                return Interaction("vread", "R", rtype)
            if n == 3:
                return Interaction("history-instance", "R", rtype)
            return Interaction("history-type" if rtype else "history-system", "R", rtype)
        if n == 0 or segments == ["_search"]:
            return Interaction("search-system", "R", None)
        if n == 1 or (n == 2 and segments[1] == "_search"):
            return Interaction("search-type", "R", rtype)
        if n == 3:
            return Interaction("search-compartment", "R", segments[2])
        return Interaction("read", "R", rtype)
    if method == "POST":
        if n == 0:
            return Interaction("batch", "E", None)  # the route says whether it was a transaction
        if segments == ["_search"]:
            return Interaction("search-system", "R", None)
        if n == 2 and segments[1] == "_search":
            return Interaction("search-type", "R", rtype)
        return Interaction("create", "C", rtype)
    if method == "PUT":
        return Interaction("update", "U", rtype)
    if method == "PATCH":
        return Interaction("patch", "U", rtype)
    if method == "DELETE":
        return Interaction("delete", "D", rtype)
    return Interaction("operation", "E", rtype)


def _outcome(status: int) -> str:
    return "0" if status < 400 else "8" if status >= 500 else "4"


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def agents(context: AccessContext | None, address: str | None) -> list[dict[str, Any]]:
    network = {"address": address, "type": "2"} if address else None
    client: dict[str, Any] | None = None
    if context is None:
        requestor: dict[str, Any] = {"who": {"display": "unauthenticated request"}, "requestor": True}
    elif context.is_system:
        requestor = {"type": {"coding": [_APPLICATION]},
                     "who": {"identifier": {"system": CLIENT_SYSTEM, "value": context.client_id}},
                     "requestor": True}
    else:
        who: dict[str, Any] = {"identifier": {"system": USER_SYSTEM, "value": context.subject}}
        if context.kind == "staff" and context.fhir_user:
            who = {"reference": relative(context.fhir_user), **who}
        requestor = {"who": who, "altId": context.subject, "requestor": True}
        if context.roles:
            requestor["role"] = [{"text": role} for role in sorted(context.roles)]
        client = {"type": {"coding": [_APPLICATION]},
                  "who": {"identifier": {"system": CLIENT_SYSTEM, "value": context.client_id}},
                  "requestor": False}
    if network:
        requestor["network"] = network
    return [requestor, client] if client else [requestor]


def request_events(context: AccessContext | None, record: AccessRecord, info: RequestInfo, *,
                   linked_types: frozenset[str], break_glass: bool = False,
                   now: float | None = None) -> list[dict[str, Any]]:
    """The AuditEvents of one request (see the module docstring for the rules)."""
    interaction = classify(info.method, info.path, info.query)
    by_patient = _by_patient(record)
    if not _audited(interaction, record, info, linked_types, bool(by_patient)):
        return []
    subtype = record.interaction or interaction.subtype
    recorded = format_instant(time.time() if now is None else now)
    common = _common(context, info, subtype, interaction, recorded, break_glass)
    events = [_event(common, info, patient, touches, subtype) for patient, touches in sorted(by_patient.items())]
    return events or [_event(common, info, None, [], subtype)]


def audited(record: AccessRecord, info: RequestInfo, linked_types: frozenset[str]) -> bool:
    """Whether a request leaves any AuditEvent (cheap: decided before anything is built or sent)."""
    interaction = classify(info.method, info.path, info.query)
    touched_patients = any(t.patients for t in record.touched if t.resource_type != "AuditEvent")
    return _audited(interaction, record, info, linked_types, touched_patients)


def _audited(interaction: Interaction, record: AccessRecord, info: RequestInfo, linked_types: frozenset[str],
             touched_patients: bool) -> bool:
    if interaction.resource_type == "AuditEvent" and info.status < 400:
        return False  # reading the audit trail is not itself audited
    if touched_patients or info.status in (401, 403):
        return True
    if (interaction.operation or "").startswith(JOB_PREFIX):
        return record.denied  # background work that touched no patient data: nothing to audit
    about_patients = interaction.resource_type is None or interaction.resource_type in linked_types \
        or interaction.operation is not None
    # nothing about patients (the common case of reading shared resources): no event
    return about_patients or any(t.denied and not t.patients and t.resource_type != "AuditEvent"
                                 for t in record.touched)


def _by_patient(record: AccessRecord) -> dict[str, list[Touch]]:
    by_patient: dict[str, list[Touch]] = {}
    for touch in record.touched:
        if touch.resource_type == "AuditEvent":
            continue
        for patient in sorted(touch.patients):
            by_patient.setdefault(patient, []).append(touch)
    return by_patient


def _common(context: AccessContext | None, info: RequestInfo, subtype: str, interaction: Interaction,
            recorded: str, break_glass: bool) -> dict[str, Any]:
    subtypes: list[dict[str, Any]] = [{"system": INTERACTION_SYSTEM, "code": subtype}]
    if interaction.operation:
        subtypes.append({"system": OPERATION_SYSTEM, "code": interaction.operation})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _REST,
        "subtype": subtypes,
        "action": "E" if subtype in ("batch", "transaction") else interaction.action,
        "recorded": recorded,
        "outcome": _outcome(info.status),
        "outcomeDesc": _status_text(info.status),
    }
    if break_glass:
        event["purposeOfEvent"] = [{"coding": [BREAK_GLASS]}]
    event["agent"] = agents(context, info.address)
    event["source"] = _SOURCE
    return event


def _event(common: dict[str, Any], info: RequestInfo, patient: str | None, touches: Sequence[Touch],
           subtype: str) -> dict[str, Any]:
    event = dict(common)
    if touches and info.status < 400 and all(t.denied for t in touches):
        event["outcome"], event["outcomeDesc"] = "4", "access refused"
    entities: list[dict[str, Any]] = []
    if patient is not None:
        entities.append({"what": {"reference": f"Patient/{patient}"}, "type": _ENTITY_PERSON,
                         "role": _ROLE_PATIENT})
    seen: set[tuple[str, str]] = {("Patient", patient)} if patient else set()
    shown = 0
    for touch in touches:
        key = (touch.resource_type, touch.id)
        if key in seen or not touch.id:
            continue
        seen.add(key)
        if shown == MAX_ENTITIES:
            entities.append({"type": _ENTITY_OBJECT, "role": _ROLE_RESOURCE,
                             "description": f"and {len(touches) - shown} more resources"})
            break
        shown += 1
        entities.append({"what": {"reference": f"{touch.resource_type}/{touch.id}"}, "type": _ENTITY_OBJECT,
                         "role": _ROLE_RESOURCE})
    if subtype in _SEARCHES and info.query:
        entities.append({"type": _ENTITY_OBJECT, "role": _ROLE_QUERY,
                         "query": base64.b64encode(info.query.encode()).decode()})
    if entities:
        event["entity"] = entities
    return event


def break_glass_event(granted_by: AccessContext, user_id: str, minutes: int, reason: str,
                      address: str | None, ended: bool = False) -> dict[str, Any]:
    """The AuditEvent of a break-glass grant (or its early end)."""
    return {
        "resourceType": "AuditEvent",
        "type": _SECURITY_ALERT,
        "subtype": [{"system": OPERATION_SYSTEM, "code": "break-glass-end" if ended else "break-glass"}],
        "action": "E",
        "recorded": format_instant(time.time()),
        "outcome": "0",
        "outcomeDesc": "break-glass ended" if ended else f"break-glass granted for {minutes} minutes",
        "purposeOfEvent": [{"coding": [BREAK_GLASS]}],
        "agent": agents(granted_by, address),
        "source": _SOURCE,
        "entity": [{"what": {"identifier": {"system": USER_SYSTEM, "value": user_id}}, "type": _ENTITY_PERSON,
                    "role": _ROLE_USER, **({"description": reason} if reason else {})}],
    }


# -- writing ------------------------------------------------------------------------------------------------------


class AuditSink(Protocol):
    """Where a request's audit facts go: :class:`AuditWriter` (in this process) or
    :class:`fhir_server.auth.audit_process.AuditProcess` (a child process)."""

    written: int

    async def start(self) -> None: ...
    async def submit(self, events: Iterable[dict[str, Any]]) -> None: ...
    async def submit_request(self, context: AccessContext | None, record: AccessRecord, info: RequestInfo,
                             break_glass: bool, linked_types: frozenset[str],
                             extra_agents: Sequence[dict[str, Any]] = ()) -> None: ...
    async def flush(self) -> None: ...
    async def stop(self, grace_s: float = 10.0) -> None: ...


class AuditWriter:
    """A queue of AuditEvents written through the repository in batches by one background task."""

    def __init__(self, repo: Repository, index: Any, *, batch_max: int = 500, queue_max: int = 20_000,
                 spool: Path | None = None, split: Any = None) -> None:
        self.repo = repo
        self.index = index  # resource → IndexEntries
        self.split = split  # or resource → (SharedIndex, IndexEntries) (SharedPartIndexer.split), cheaper to store
        self.batch_max = batch_max
        # <dir>/<name>-<pid>.ndjson: each process spools to a file of its own (several workers share a data dir)
        self.spool_dir = spool.parent if spool is not None else None
        self.spool_stem = spool.stem if spool is not None else ""
        self.spool = spool.with_name(f"{spool.stem}-{os.getpid()}{spool.suffix}") if spool is not None else None
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit writer")
        await self.write_spooled(self)

    async def write_spooled(self, sink: AuditSink) -> None:
        """Hand ``sink`` the events that stopped processes spooled, one file at a time (deleted once stored)."""
        for path in await asyncio.to_thread(self._claim_spools):
            lines = await asyncio.to_thread(path.read_bytes)
            events = [jsonio.loads(line) for line in lines.splitlines() if line.strip()]
            await sink.submit(events)
            await sink.flush()
            await asyncio.to_thread(path.unlink)
            log.info("audit: %d spooled events written", len(events))

    def _claim_spools(self) -> list[Path]:
        """Spool files left by stopped processes, each renamed first so that only one process takes it."""
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return []
        claimed = []
        for path in sorted(self.spool_dir.glob(f"{self.spool_stem}-*.ndjson")):
            if ".claimed-" in path.name:
                continue
            target = path.with_name(f"{path.stem}.claimed-{os.getpid()}.ndjson")
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue  # another process took it
            claimed.append(target)
        return claimed

    async def submit(self, events: Iterable[dict[str, Any]]) -> None:
        """Queue events; waits while the queue is full (never drops)."""
        for event in events:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                await self._queue.put(event)

    async def submit_request(self, context: AccessContext | None, record: AccessRecord, info: RequestInfo,
                             break_glass: bool, linked_types: frozenset[str],
                             extra_agents: Sequence[dict[str, Any]] = ()) -> None:
        """Queue the AuditEvents of one request (built here, in the request's process); ``extra_agents`` are
        appended to every event's agents."""
        events = request_events(context, record, info, linked_types=linked_types, break_glass=break_glass)
        for event in events if extra_agents else ():
            event["agent"] = [*event["agent"], *extra_agents]
        if events:
            await self.submit(events)

    async def flush(self) -> None:
        """Wait until every event queued so far is written."""
        await self._queue.join()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Write what is queued (for up to ``grace_s`` seconds), then spool the rest to disk."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=grace_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left: list[dict[str, Any]] = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        if left:
            self.spool_events(left)

    def spool_events(self, events: list[dict[str, Any]]) -> None:
        if self.spool is None:
            log.error("audit: %d events could not be written and there is no spool file", len(events))
            return
        fd = os.open(self.spool, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            for event in events:
                out.write(jsonio.dumps(event) + b"\n")
        log.error("audit: %d events could not be written yet; kept in %s", len(events), self.spool)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.write_batch(batch)
            except asyncio.CancelledError:
                self.spool_events(batch)
                raise
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def write_batch(self, batch: list[dict[str, Any]]) -> None:
        """Write events in one commit, trying again (with back-off) for as long as the store refuses."""
        delay = 0.1
        while True:
            try:
                await self._write(batch)
                return
            except Exception as exc:  # the store is unavailable: keep the events and try again
                log.error("audit: writing %d events failed (%s); retrying in %.1f s", len(batch),
                          type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        items = []
        for event in batch:
            if "id" not in event:
                event["id"] = str(uuid.uuid4())
            if self.split is not None:
                shared, own = self.split(event)
                items.append(NewResource(event["id"], event, own, shared))
            else:
                items.append(NewResource(event["id"], event, self.index(event)))
        try:
            created = await self.repo.create_many("AuditEvent", items)
        except FhirError as exc:
            if exc.op_index is None:
                raise
            log.error("audit: an AuditEvent was refused by the store (%s, %s); it is dropped",
                      type(exc).__name__, exc.code)
            bad = batch[exc.op_index]
            rest = [e for e in batch if e is not bad]
            if rest:
                await self._write(rest)
            return
        for event, new in zip(batch, created, strict=True):
            if not new:  # sent again after the writer restarted: it is in the store already
                log.info("audit: AuditEvent %s was written before; not written twice", event["id"])
        self.written += len(batch)

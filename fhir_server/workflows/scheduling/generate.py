"""Schedules and Slots from PractitionerRole availability, for a rolling horizon.

``Schedule/{role id}`` belongs to ``PractitionerRole/{role id}`` (actor: the role, its practitioner and its
locations).  Its Slots have deterministic ids (``{role id}-{yyyymmddHHMM}``, UTC) and the tag ``generated``, so
regenerating — after the role's availability changed, or daily to extend the horizon — compares what the
availability offers with what is stored and writes only the difference:

* a new time → a ``free`` Slot;
* a generated ``free`` Slot the availability no longer offers → ``busy-unavailable``, tagged ``withdrawn``
  (never deleted: its id stays taken and its history stays readable);
* a ``withdrawn`` Slot offered again → ``free``;
* a ``free`` Slot whose specialty, service type or end changed → updated;
* anything booked or held (``busy``, ``busy-tentative``), set by hand, or not generated is never touched.

Every update is checked against the version that was read: if a booking gets in between, the write fails with
``ConcurrentChange`` and the whole comparison runs again (it is idempotent).  Slots are written in chunks, each
one atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.errors import ConcurrentChange, Conflict, Gone, NotFound
from fhir_server.storage.base import WriteOp
from fhir_server.workflows.scheduling._model import (
    GENERATED,
    WITHDRAWN,
    instant,
    ref,
    slot_id,
    tags,
    with_tags,
)
from fhir_server.workflows.scheduling._store import Current, Deps, current, search_all
from fhir_server.workflows.scheduling.availability import SlotTime, slot_times

CHUNK = 500
ATTEMPTS = 3


@dataclass
class Generated:
    created: int = 0
    reopened: int = 0
    withdrawn: int = 0
    updated: int = 0
    untouched_booked: int = 0


class SlotGenerator:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def generate(self, role_id: str) -> Generated:
        """Bring ``Schedule/{role_id}`` and its Slots in line with the role's availability."""
        for attempt in range(ATTEMPTS):
            try:
                return await self._generate(role_id)
            except (ConcurrentChange, Conflict):
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _generate(self, role_id: str) -> Generated:
        deps = self.deps
        role = await self._optional("PractitionerRole", role_id)
        schedule = await self._optional("Schedule", role_id)
        if role is None and schedule is None:
            return Generated()
        role_body: dict[str, Any] = role.resource if role else {"active": False}
        now = datetime.fromtimestamp(deps.now(), UTC).replace(second=0, microsecond=0)
        end = now + timedelta(days=deps.settings.horizon_days)
        types = await self._service_types(role_body)
        ops: list[WriteOp] = []
        wanted_schedule = build_schedule(role_id, role_body, types, now, end)
        if schedule is None or _differs(schedule.resource, wanted_schedule):
            ops.append(self._put("Schedule", wanted_schedule, schedule))
        offered = {slot_id(role_id, t.start): t for t in slot_times(
            role_body, now, end, ZoneInfo(deps.settings.timezone), deps.settings.slot_minutes)}
        stored = {c.resource["id"]: c async for c in search_all(
            deps, "Slot", [("schedule", f"Schedule/{role_id}"), ("start", f"ge{instant(now)}")])}
        result = Generated()
        slot_ops = self._slot_ops(role_id, role_body, types, offered, stored, result)
        ops.extend(slot_ops)
        for i in range(0, len(ops), CHUNK):
            await deps.resources.write(ops[i:i + CHUNK])
        return result

    def _slot_ops(self, role_id: str, role: dict[str, Any], types: list[dict[str, Any]],
                  offered: dict[str, SlotTime], stored: dict[str, Current], result: Generated) -> list[WriteOp]:
        ops: list[WriteOp] = []
        for id, time in offered.items():
            wanted = build_slot(id, role_id, role, types, time)
            existing = stored.get(id)
            if existing is None:
                ops.append(self.deps.resources.plan_create("Slot", wanted, id=id))
                result.created += 1
                continue
            body = existing.resource
            status = body.get("status")
            if status == "busy-unavailable" and "withdrawn" in tags(body):
                ops.append(self._put("Slot", wanted, existing))
                result.reopened += 1
            elif status == "free" and "generated" in tags(body) and _differs(body, wanted):
                ops.append(self._put("Slot", wanted, existing))
                result.updated += 1
            elif status in ("busy", "busy-tentative"):
                result.untouched_booked += 1
        for id, existing in stored.items():
            body = existing.resource
            if id in offered or body.get("status") != "free" or "generated" not in tags(body):
                continue
            withdrawn = with_tags({**body, "status": "busy-unavailable"}, GENERATED, WITHDRAWN)
            ops.append(self._put("Slot", withdrawn, existing))
            result.withdrawn += 1
        return ops

    def _put(self, rtype: str, body: dict[str, Any], existing: Current | None) -> WriteOp:
        """An update that applies only to the version read (else ConcurrentChange); a create when new."""
        op = self.deps.resources.plan_update(rtype, body["id"], body)
        if existing is not None:
            op.if_match, op.expect_resolved, op.expect_id = existing.version, True, body["id"]
        return op

    async def _optional(self, rtype: str, id: str) -> Current | None:
        try:
            return current(await self.deps.resources.read(rtype, id))
        except (NotFound, Gone):
            return None

    async def _service_types(self, role: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``type``s of the HealthcareServices the role provides (copied onto its Slots: service-type)."""
        out: list[dict[str, Any]] = []
        for reference in role.get("healthcareService", ()):
            target = str(reference.get("reference", ""))
            if not target.startswith("HealthcareService/"):
                continue
            service = await self._optional("HealthcareService", target.split("/", 1)[1])
            for concept in (service.resource.get("type", ()) if service else ()):
                if concept not in out:
                    out.append(concept)
        return out


def build_schedule(role_id: str, role: dict[str, Any], types: list[dict[str, Any]], start: datetime,
                   end: datetime) -> dict[str, Any]:
    actors = [ref("PractitionerRole", role_id)]
    if isinstance(role.get("practitioner"), dict):
        actors.append({k: v for k, v in role["practitioner"].items() if k in ("reference", "display")})
    actors.extend({k: v for k, v in loc.items() if k in ("reference", "display")} for loc in role.get("location", ()))
    schedule: dict[str, Any] = {
        "resourceType": "Schedule", "id": role_id, "meta": {"tag": [GENERATED]},
        "active": role.get("active", True) is not False,
    }
    if types:
        schedule["serviceType"] = types
    if role.get("specialty"):
        schedule["specialty"] = role["specialty"]
    schedule["actor"] = actors
    schedule["planningHorizon"] = {"start": start.date().isoformat(), "end": end.date().isoformat()}
    schedule["comment"] = "Generated from the availability of PractitionerRole/" + role_id
    return schedule


def build_slot(id: str, role_id: str, role: dict[str, Any], types: list[dict[str, Any]],
               time: SlotTime) -> dict[str, Any]:
    slot: dict[str, Any] = {"resourceType": "Slot", "id": id, "meta": {"tag": [GENERATED]}}
    if types:
        slot["serviceType"] = types
    if role.get("specialty"):
        slot["specialty"] = role["specialty"]
    slot.update({"schedule": ref("Schedule", role_id), "status": "free", "start": instant(time.start),
                 "end": instant(time.end)})
    return slot


def _differs(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a stored resource differs from what generation wants (meta and extensions aside)."""
    def strip(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("meta", "extension")}

    return strip(stored) != strip(wanted)

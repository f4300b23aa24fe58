"""``$hold``, ``$book``, ``$reschedule`` and ``$cancel``: every change of an Appointment and its Slots is ONE
repository write.

The Slot ops are checked against the version of the Slot that was read (``if_match`` with ``expect_resolved``),
so when two requests take the same free Slot the store lets one commit and refuses the other with
``ConcurrentChange``; the loser reads the Slot again, finds it taken and answers 409.  The Slot ops are
``implied``: they follow from the Appointment op of the same write, which the caller's token must allow (a patient
books only for themselves: the Appointment must lie in their compartment); the Slot ops themselves are the
server's (patients may read Slots, not write them).  The Slot op comes first in the write, so that even a store
without transactions stops before the Appointment when the Slot was lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fhir_server import jsonio
from fhir_server.errors import ConcurrentChange, Conflict, InvalidRequest, NotFound
from fhir_server.services.resources import new_id
from fhir_server.storage.base import WriteOp, WriteOutcome
from fhir_server.workflows.scheduling._appointments import (
    CLIENT_ELEMENTS,
    from_slot,
    ordered,
    patient_of,
    providers,
    slot_ids,
)
from fhir_server.workflows.scheduling._model import HOLD_EXPIRED, epoch, hold_of, slot_state, with_hold
from fhir_server.workflows.scheduling._params import OpParams, reference_id
from fhir_server.workflows.scheduling._store import Current, Deps, read

ATTEMPTS = 3
BOOK_PARAMS = ("appointment", "slot", "patient", "comment")
HOLD_PARAMS = ("appointment", "slot", "patient", "comment", "minutes")
RESCHEDULE_PARAMS = ("slot", "reason")
CANCEL_PARAMS = ("reason",)
RELEASE_TASK = "scheduling.release_hold"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Request:
    """What a $hold or $book asks for: a slot, a patient, and what the client says about the visit."""

    slot_id: str
    patient_id: str
    details: dict[str, Any]
    held_id: str | None = None  # booking a hold: the pending Appointment


@dataclass(frozen=True)
class Result:
    """The Appointment as written and the Slots it changed (name → Slot body)."""

    appointment: dict[str, Any]
    slots: dict[str, dict[str, Any]]

    def parameters(self) -> dict[str, Any]:
        parts = [{"name": "appointment", "resource": self.appointment}]
        parts += [{"name": name, "resource": slot} for name, slot in self.slots.items()]
        return {"resourceType": "Parameters", "parameter": parts}


class BookingService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    # -- $hold and $book ------------------------------------------------------------------------------------

    async def book(self, params: OpParams) -> Result:
        request = await self._request(params, allow_held=True)
        return await _retrying(lambda: self._book(request))

    async def hold(self, params: OpParams) -> Result:
        request = await self._request(params, allow_held=False)
        settings = self.deps.settings
        minutes = params.integer("minutes", 1, settings.hold_max_minutes) or settings.hold_minutes
        result = await _retrying(lambda: self._hold(request, minutes))
        if self.deps.enqueue is not None:
            expires = hold_of(result.slots["slot"])
            assert expires is not None
            await self.deps.enqueue(RELEASE_TASK, result.appointment["id"], at=expires[1] + 1,
                                    key=f"hold:{result.appointment['id']}")
        return result

    async def _request(self, params: OpParams, allow_held: bool) -> Request:
        given = params.resource("appointment", "Appointment") or {}
        held_id = given.get("id") if allow_held and isinstance(given.get("id"), str) else None
        if held_id is not None:
            held = await read(self.deps, "Appointment", held_id, "appointment")
            if held.resource.get("status") != "pending":
                raise Conflict(f"Appointment/{held_id} is {held.resource.get('status')}, not a held (pending) "
                               "appointment", expression="appointment")
            given = {**held.resource, **{k: v for k, v in given.items() if k in CLIENT_ELEMENTS}}
        slot_id = params.reference("slot", "Slot") or _one_slot(given)
        patient_id = params.reference("patient", "Patient") or patient_of(given)
        if patient_id is None:
            raise InvalidRequest("name the patient (patient, or a Patient participant of appointment)",
                                 expression="patient")
        await read(self.deps, "Patient", patient_id, "patient")  # unknown, or not the caller's to see: 404
        details = {k: v for k, v in given.items() if k in CLIENT_ELEMENTS}
        comment = params.text("comment")
        if comment:
            details["comment"] = comment
        return Request(slot_id, patient_id, details, held_id)

    async def _book(self, request: Request) -> Result:
        slot = await read(self.deps, "Slot", request.slot_id, "slot")
        self._check_free(slot, request.held_id)
        booked_slot = slot_state(slot.resource, "busy")
        appointment = await self._appointment(slot.resource, request, "booked", "accepted")
        ops = [self._slot_op(booked_slot, slot)]
        if request.held_id is not None:
            held = await read(self.deps, "Appointment", request.held_id, "appointment")
            appointment = {"id": request.held_id, **appointment, "created": held.resource.get("created")}
            ops.append(self._update("Appointment", ordered(_clean(appointment)), held))
        else:
            ops.append(self.deps.resources.plan_create("Appointment", appointment))
        outcomes = await self.deps.resources.write(ops)
        return Result(_body(outcomes[1]), {"slot": _body(outcomes[0])})

    async def _hold(self, request: Request, minutes: int) -> Result:
        slot = await read(self.deps, "Slot", request.slot_id, "slot")
        self._check_free(slot, None)
        appointment_id = new_id()
        expires = datetime.fromtimestamp(self.deps.now(), UTC) + timedelta(minutes=minutes)
        held_slot = with_hold(slot_state(slot.resource, "busy-tentative"), appointment_id, expires)
        appointment = await self._appointment(slot.resource, request, "pending", "tentative")
        ops = [self._slot_op(held_slot, slot),
               self.deps.resources.plan_create("Appointment", appointment, id=appointment_id)]
        outcomes = await self.deps.resources.write(ops)
        return Result(_body(outcomes[1]), {"slot": _body(outcomes[0])})

    def _check_free(self, slot: Current, held_id: str | None) -> None:
        body = slot.resource
        status = body.get("status")
        start = epoch(body.get("start"))
        if start is not None and start < self.deps.now():
            raise Conflict(f"Slot/{body['id']} starts in the past", expression="slot")
        if status == "free":
            return
        hold = hold_of(body)
        if status == "busy-tentative" and hold is not None:
            if held_id is not None and hold[0] == held_id and hold[1] > self.deps.now():
                return
            if hold[1] <= self.deps.now():
                return  # a lapsed hold does not keep the slot
        if held_id is not None:
            raise Conflict(f"the hold on Slot/{body['id']} has lapsed and the slot is now {status}",
                           expression="appointment")
        raise Conflict(f"Slot/{body['id']} is not free (status {status})", expression="slot")

    async def _appointment(self, slot: dict[str, Any], request: Request, status: str,
                           participant_status: str) -> dict[str, Any]:
        patient = {"actor": {"reference": f"Patient/{request.patient_id}"}}
        appointment = from_slot(slot, [patient, *await providers(self.deps, slot)], status, participant_status)
        appointment.update(request.details)
        appointment["created"] = datetime.fromtimestamp(self.deps.now(), UTC).date().isoformat()
        return ordered(appointment)

    # -- $reschedule and $cancel ----------------------------------------------------------------------------

    async def reschedule(self, appointment_id: str, params: OpParams) -> Result:
        new_slot_id = params.reference("slot", "Slot", required=True)
        assert new_slot_id is not None
        reason = params.concept("reason")
        return await _retrying(lambda: self._reschedule(appointment_id, new_slot_id, reason))

    async def _reschedule(self, appointment_id: str, new_slot_id: str, reason: dict[str, Any] | None) -> Result:
        current = await read(self.deps, "Appointment", appointment_id)
        body = current.resource
        if body.get("status") != "booked":
            raise Conflict(f"Appointment/{appointment_id} is {body.get('status')}; only a booked appointment can "
                           "be rescheduled", expression="Appointment.status")
        if new_slot_id in slot_ids(body):
            raise InvalidRequest("the appointment is already in this slot", expression="slot")
        new_slot = await read(self.deps, "Slot", new_slot_id, "slot")
        self._check_free(new_slot, None)
        patient_id = patient_of(body)
        if patient_id is None:
            raise Conflict(f"Appointment/{appointment_id} has no patient participant",
                           expression="Appointment.participant")
        request = Request(new_slot_id, patient_id, {k: v for k, v in body.items() if k in CLIENT_ELEMENTS})
        moved = await self._appointment(new_slot.resource, request, "booked", "accepted")
        moved = {"id": appointment_id, **moved, "created": body.get("created")}
        if reason is not None:
            moved["comment"] = f"Rescheduled: {_text(reason)}"
        ops = [self._slot_op(slot_state(new_slot.resource, "busy"), new_slot),
               self._update("Appointment", ordered(_clean(moved)), current)]
        released = await self._release_ops(body, appointment_id)
        outcomes = await self.deps.resources.write([*ops, *released])
        slots = {"slot": _body(outcomes[0])}
        if released:
            slots["released"] = _body(outcomes[2])
        return Result(_body(outcomes[1]), slots)

    async def cancel(self, appointment_id: str, params: OpParams) -> Result:
        reason = params.concept("reason", required=True)
        assert reason is not None
        return await _retrying(lambda: self._cancel(appointment_id, reason))

    async def _cancel(self, appointment_id: str, reason: dict[str, Any]) -> Result:
        current = await read(self.deps, "Appointment", appointment_id)
        body = current.resource
        if body.get("status") not in ("booked", "pending", "proposed", "arrived", "checked-in", "waitlist"):
            raise Conflict(f"Appointment/{appointment_id} is {body.get('status')} and cannot be cancelled",
                           expression="Appointment.status")
        cancelled = ordered(_clean({**body, "status": "cancelled", "cancelationReason": reason}))
        released = await self._release_ops(body, appointment_id)
        outcomes = await self.deps.resources.write([self._update("Appointment", cancelled, current), *released])
        slots = {"slot": _body(outcomes[1])} if released else {}
        return Result(_body(outcomes[0]), slots)

    async def release_lapsed_hold(self, appointment_id: str) -> bool:
        """The job a $hold schedules for its expiry: a pending Appointment whose hold has lapsed is cancelled
        and its Slot freed (unless the hold was booked, or renewed, meanwhile).  Returns whether it did."""
        async def attempt() -> bool:
            try:
                current = await read(self.deps, "Appointment", appointment_id)
            except NotFound:
                return False
            body = current.resource
            if body.get("status") != "pending":
                return False
            for sid in slot_ids(body):
                slot = await read(self.deps, "Slot", sid)
                hold = hold_of(slot.resource)
                if hold is not None and hold[0] == appointment_id and hold[1] > self.deps.now():
                    return False
            cancelled = ordered(_clean({**body, "status": "cancelled",
                                        "cancelationReason": {"coding": [HOLD_EXPIRED], "text": "hold expired"}}))
            released = await self._release_ops(body, appointment_id)
            await self.deps.resources.write([self._update("Appointment", cancelled, current), *released])
            return True

        return await _retrying(attempt)

    async def _release_ops(self, appointment: dict[str, Any], appointment_id: str) -> list[WriteOp]:
        """Free the appointment's slots that it holds or has booked (a slot taken by another is left alone)."""
        ops = []
        for sid in slot_ids(appointment):
            try:
                slot = await read(self.deps, "Slot", sid)
            except NotFound:
                continue
            status = slot.resource.get("status")
            hold = hold_of(slot.resource)
            mine = (status == "busy" and appointment.get("status") != "pending") or \
                (status == "busy-tentative" and hold is not None and hold[0] == appointment_id)
            if mine:
                ops.append(self._slot_op(slot_state(slot.resource, "free"), slot))
        return ops

    # -- ops ------------------------------------------------------------------------------------------------

    def _slot_op(self, body: dict[str, Any], read_as: Current) -> WriteOp:
        op = self._update("Slot", _clean(body), read_as)
        op.implied = True
        return op

    def _update(self, rtype: str, body: dict[str, Any], read_as: Current) -> WriteOp:
        """An update that applies only to the version that was read (otherwise ConcurrentChange)."""
        op = self.deps.resources.plan_update(rtype, body["id"], body)
        op.if_match, op.expect_resolved, op.expect_id = read_as.version, True, body["id"]
        return op


async def _retrying(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run a read-check-write again when a concurrent writer changed what it read; after the last attempt, 409."""
    for i in range(ATTEMPTS):
        try:
            return await attempt()
        except ConcurrentChange as exc:
            if i == ATTEMPTS - 1:
                raise Conflict("the slot or appointment kept changing while this request ran; try again",
                               expression="slot") from exc
    raise AssertionError("unreachable")


def _one_slot(appointment: dict[str, Any]) -> str:
    slots = slot_ids(appointment)
    if len(slots) != 1:
        raise InvalidRequest("name one slot (slot, or appointment.slot)", expression="slot")
    return reference_id(f"Slot/{slots[0]}", "Slot", "slot")


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    """Without meta.versionId/lastUpdated (the store writes them) and without empty values."""
    out = {k: v for k, v in body.items() if v is not None}
    meta = {k: v for k, v in out.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def _text(concept: dict[str, Any]) -> str:
    if concept.get("text"):
        return str(concept["text"])
    codings = concept.get("coding") or [{}]
    return str(codings[0].get("display") or codings[0].get("code") or "")


def _body(outcome: WriteOutcome) -> dict[str, Any]:
    assert outcome.version is not None and outcome.version.body is not None
    body: dict[str, Any] = jsonio.loads(outcome.version.body)
    return body

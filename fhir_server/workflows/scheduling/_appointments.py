"""Building Appointments from Slots: who takes part (from the Slot's Schedule) and the booked/proposed shape."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Forbidden, Gone, NotFound
from fhir_server.workflows.scheduling._model import epoch
from fhir_server.workflows.scheduling._store import Deps, current

#: elements a client may set on the Appointment it books (the rest comes from the Slot and the Schedule)
CLIENT_ELEMENTS = ("appointmentType", "reasonCode", "reasonReference", "priority", "description", "comment",
                   "patientInstruction", "basedOn", "supportingInformation")
_ORDER = ("resourceType", "id", "meta", "extension", "identifier", "status", "cancelationReason", "serviceCategory",
          "serviceType", "specialty", "appointmentType", "reasonCode", "reasonReference", "priority", "description",
          "supportingInformation", "start", "end", "minutesDuration", "slot", "created", "comment",
          "patientInstruction", "basedOn", "participant", "requestedPeriod")


def ordered(appointment: dict[str, Any]) -> dict[str, Any]:
    return {k: appointment[k] for k in sorted(appointment, key=lambda k: _ORDER.index(k) if k in _ORDER else 99)}


def schedule_id(slot: dict[str, Any]) -> str | None:
    reference = str(slot.get("schedule", {}).get("reference", ""))
    return reference.split("/", 1)[1] if reference.startswith("Schedule/") else None


async def providers(deps: Deps, slot: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-patient participants of an appointment in this slot: the Schedule's actors.  A generated Schedule
    belongs to the PractitionerRole with its id (a directory resource every caller may read); other Schedules
    are read for their actors when the caller may."""
    sid = schedule_id(slot)
    if sid is None:
        return []
    try:
        role = current(await deps.resources.read("PractitionerRole", sid)).resource
        actors = [{"reference": f"PractitionerRole/{sid}"}]
        if isinstance(role.get("practitioner"), dict):
            actors.append(_reference(role["practitioner"]))
        actors.extend(_reference(loc) for loc in role.get("location", ()))
    except (NotFound, Gone):
        try:
            schedule = current(await deps.resources.read("Schedule", sid)).resource
        except (NotFound, Gone, Forbidden):
            return []
        actors = [_reference(a) for a in schedule.get("actor", ())]
    return [{"actor": a} for a in actors if a.get("reference")]


def _reference(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k in ("reference", "display")}


def from_slot(slot: dict[str, Any], participants: list[dict[str, Any]], status: str,
              participant_status: str) -> dict[str, Any]:
    appointment: dict[str, Any] = {"resourceType": "Appointment", "status": status}
    for key in ("serviceCategory", "serviceType", "specialty", "appointmentType"):
        if slot.get(key):
            appointment[key] = slot[key]
    appointment["start"], appointment["end"] = slot["start"], slot["end"]
    start, end = epoch(slot["start"]), epoch(slot["end"])
    if start is not None and end is not None and end > start:
        appointment["minutesDuration"] = int((end - start) // 60)
    appointment["slot"] = [{"reference": f"Slot/{slot['id']}"}]
    appointment["participant"] = [{**p, "required": "required", "status": participant_status} for p in participants]
    return ordered(appointment)


def patient_of(appointment: dict[str, Any]) -> str | None:
    for participant in appointment.get("participant", ()):
        reference = str(participant.get("actor", {}).get("reference", ""))
        if reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None


def slot_ids(appointment: dict[str, Any]) -> list[str]:
    out = []
    for reference in appointment.get("slot", ()):
        value = str(reference.get("reference", ""))
        if value.startswith("Slot/"):
            out.append(value.split("/", 1)[1])
    return out

"""The values a message template is filled with, read from the resource a notification is about."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server.workflows.notifications import _store

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext


def person_name(resource: dict[str, Any] | None) -> str:
    if not resource:
        return ""
    for name in resource.get("name") or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or ()), *(name.get("given") or ()), name.get("family") or ""]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return ""


def when(value: str | None) -> str:
    """``2026-05-04T09:30:00+02:00`` → ``2026-05-04 09:30 (+02:00)``: the time as the hospital wrote it."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if len(value) <= 10:
        return parsed.strftime("%Y-%m-%d")
    offset = parsed.strftime("%z")
    zone = "UTC" if offset in ("", "+0000") else f"{offset[:3]}:{offset[3:]}"
    return f"{parsed.strftime('%Y-%m-%d %H:%M')} ({zone})"


async def display(ctx: JobContext, reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    if reference.get("display"):
        return str(reference["display"])
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return ""
    found = await _store.read(ctx, ref)
    if found is None:
        return ""
    resource = found[1]
    if resource["resourceType"] == "PractitionerRole":
        return await display(ctx, resource.get("practitioner"))
    if resource["resourceType"] in ("Location", "HealthcareService", "Organization"):
        return str(resource.get("name") or "")
    return person_name(resource)


async def for_request(ctx: JobContext, request: dict[str, Any], recipient: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    about_ref = _store.reference_of(request, "about")
    about = await _store.read(ctx, about_ref) if about_ref else None
    if about is not None:
        resource = about[1]
        values["reference"] = f"{resource['resourceType']}/{resource['id']}"
        if resource["resourceType"] == "Appointment":
            values.update(await _appointment(ctx, resource))
        elif resource["resourceType"] == "CarePlan":
            values.update(_care_plan(resource, request))
        elif resource["resourceType"] == "MedicationRequest":
            values.update(_medication(resource))
    if not values.get("patient"):
        subject = await _store.read(ctx, _store.reference_of(request, "subject") or "")
        values["patient"] = person_name(subject[1] if subject else None)
    if not values.get("when"):
        values["when"] = when(request.get("occurrenceDateTime"))
    if recipient["resourceType"] == "Patient" and not values.get("patient"):
        values["patient"] = person_name(recipient)
    return values


async def _appointment(ctx: JobContext, appointment: dict[str, Any]) -> dict[str, str]:
    values = {"when": when(appointment.get("start"))}
    for participant in appointment.get("participant") or ():
        actor = participant.get("actor") or {}
        kind = str(actor.get("reference") or "").split("/")[0]
        if kind == "Patient" and "patient" not in values:
            values["patient"] = await display(ctx, actor)
        elif kind in ("Practitioner", "PractitionerRole") and "practitioner" not in values:
            values["practitioner"] = await display(ctx, actor)
        elif kind == "Location" and "location" not in values:
            values["location"] = await display(ctx, actor)
    reason = appointment.get("cancelationReason") or {}
    text = reason.get("text") or next((c.get("display") or c.get("code") for c in reason.get("coding") or ()), "")
    if text:
        values["cancel_reason"] = str(text)
    return values


def _care_plan(plan: dict[str, Any], request: dict[str, Any]) -> dict[str, str]:
    index = next((int(i["value"].split("/")[2]) for i in request.get("identifier") or ()
                  if str(i.get("value", "")).startswith("CarePlan/")), 0)
    activities = plan.get("activity") or [{}]
    detail = activities[min(index, len(activities) - 1)].get("detail") or {}
    text = detail.get("description") or (detail.get("code") or {}).get("text") or plan.get("title") or ""
    return {"activity": str(text)}


def _medication(request: dict[str, Any]) -> dict[str, str]:
    concept = request.get("medicationCodeableConcept") or {}
    name = concept.get("text") or next((c.get("display") for c in concept.get("coding") or () if c.get("display")),
                                       "") or (request.get("medicationReference") or {}).get("display") or ""
    dosage = next((d.get("text") for d in request.get("dosageInstruction") or () if d.get("text")), "")
    return {"medication": str(name), "dosage": str(dosage)}

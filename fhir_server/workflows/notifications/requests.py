"""CommunicationRequests: built, created idempotently (by identifier), and reconciled with what a resource
currently asks for (reminders of an Appointment, CarePlan or MedicationRequest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.workflows.notifications import _store
from fhir_server.workflows.notifications._codes import BASE, IDENTIFIER_SYSTEM, KIND_SYSTEM, category

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext
    from fhir_server.storage.base import WriteOp

STATUS_REASON_SYSTEM = f"{BASE}/CodeSystem/notification-status"


@dataclass(frozen=True)
class Wanted:
    """One notification a resource asks for: ``identifier`` makes creating it idempotent."""

    identifier: str
    kind: str
    recipient: str  # Patient/x, Practitioner/y, PractitionerRole/z
    subject: str | None  # the patient it is about
    about: str  # the resource it comes from
    due: float


def build(wanted: Wanted, now: float) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": wanted.identifier}],
        "basedOn": [{"reference": wanted.about}],
        "status": "active",
        "category": category(wanted.kind),
        "priority": "routine",
    }
    if wanted.subject:
        resource["subject"] = {"reference": wanted.subject}
    resource["about"] = [{"reference": wanted.about}]
    resource["occurrenceDateTime"] = _store.instant(wanted.due)
    resource["authoredOn"] = _store.instant(now)
    resource["recipient"] = [{"reference": wanted.recipient}]
    return resource


def plan(ctx: JobContext, wanted: Wanted) -> WriteOp:
    return _store.plan_create(ctx, build(wanted, ctx.now()),
                              if_none_exist=f"identifier={IDENTIFIER_SYSTEM}|{wanted.identifier}")


def status_reason(code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": STATUS_REASON_SYSTEM, "code": code}], "text": text}


async def reconcile(ctx: JobContext, about: str, kind: str, wanted: list[Wanted], now: float) -> list[str]:
    """Make the active, not yet due ``kind`` requests based on ``about`` exactly ``wanted``: create the missing
    ones, revoke the others.  Returns the ids of requests created."""
    existing = await _store.search(
        ctx, "CommunicationRequest", f"based-on={about}&status=active&category={KIND_SYSTEM}|{kind}")
    want = {w.identifier: w for w in wanted}
    ops: list[WriteOp] = []
    have: set[str] = set()
    for stored, resource in existing:
        ident = _identifier(resource)
        due = resource.get("occurrenceDateTime")
        if ident in want:
            have.add(ident)
        elif due is None or _store.epoch_of(due) > now:
            resource["status"] = "revoked"
            resource["statusReason"] = status_reason("superseded", f"{about} no longer asks for it")
            ops.append(_store.plan_update(ctx, stored, resource))
    ops.extend(plan(ctx, w) for ident, w in want.items() if ident not in have)
    outcomes = await _store.write(ctx, ops)
    return [o.id for o in outcomes if o.created and o.resource_type == "CommunicationRequest" and o.id]


def _identifier(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or ():
        if ident.get("system") == IDENTIFIER_SYSTEM:
            return str(ident.get("value"))
    return None

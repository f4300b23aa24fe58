"""Appointment notifications: what changed between two versions, confirmations to the patient and the
practitioner(s), and reminders before the start.

* booked: the Appointment is ``booked`` now and was not before (or is new) → ``appointment-booked``;
* rescheduled: ``booked`` before and now, with another ``start`` → ``appointment-rescheduled``;
* cancelled: ``booked`` before, ``cancelled`` now → ``appointment-cancelled``.

Reminders (``appointment-reminder``, to the patient) are due ``offset`` before the start for each offset of the
patient's ``reminder-offsets`` extension or ``FHIR_NOTIFY__REMINDER_OFFSETS``; only those still in the future are
created.  Rescheduling replaces them, cancelling revokes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.workflows.notifications import _store, preferences
from fhir_server.workflows.notifications._codes import APPOINTMENT_REMINDER, BOOKED, CANCELLED, RESCHEDULED
from fhir_server.workflows.notifications.requests import Wanted, plan, reconcile

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext


def change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str | None:
    if after is None:
        return None
    was_booked = before is not None and before.get("status") == "booked"
    if after.get("status") == "booked":
        if not was_booked:
            return BOOKED
        assert before is not None
        return RESCHEDULED if before.get("start") != after.get("start") else None
    if after.get("status") == "cancelled" and was_booked:
        return CANCELLED
    return None


def participants(appointment: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The patient and the practitioners (Practitioner or PractitionerRole) taking part."""
    patient: str | None = None
    staff: list[str] = []
    for participant in appointment.get("participant") or ():
        if participant.get("status") == "declined":
            continue
        ref = str((participant.get("actor") or {}).get("reference") or "")
        kind = ref.split("/")[0]
        if kind == "Patient" and patient is None:
            patient = ref
        elif kind in ("Practitioner", "PractitionerRole") and ref not in staff:
            staff.append(ref)
    return patient, staff


async def appointment_changed(ctx: JobContext, appointment_id: str, version: int) -> list[str]:
    """Confirmations and reminders for one version of an Appointment; returns the confirmation requests made."""
    after = _store.body(await ctx.repo.vread("Appointment", appointment_id, version))
    before = _store.body(await ctx.repo.vread("Appointment", appointment_id, version - 1)) if version > 1 else None
    kind = change(before, after)
    if kind is None or after is None:
        return []
    about = f"Appointment/{appointment_id}"
    patient, staff = participants(after)
    now = ctx.now()
    confirmations = [
        Wanted(f"{about}/_history/{version}/{kind}/{recipient}", kind, recipient, patient, about, now)
        for recipient in ([patient] if patient else []) + staff
    ]
    outcomes = await _store.write(ctx, [plan(ctx, w) for w in confirmations])
    created = [o.id for o in outcomes if o.id and not o.noop]
    await _reminders(ctx, about, after if kind != CANCELLED else None, patient, now)
    for request_id in created:
        await ctx.queue.enqueue("notifications.dispatch", request_id, key=f"dispatch:{request_id}")
    return created


async def _reminders(ctx: JobContext, about: str, appointment: dict[str, Any] | None, patient: str | None,
                     now: float) -> None:
    wanted: list[Wanted] = []
    if appointment is not None and patient and appointment.get("start"):
        start = _store.epoch_of(appointment["start"])
        found = await _store.read(ctx, patient)
        offsets = preferences.reminder_offsets(found[1] if found else None, ctx.settings.notify.reminder_offsets)
        for offset in offsets:
            if start - offset > now:
                wanted.append(Wanted(f"{about}/reminder/{appointment['start']}/{int(offset)}s",
                                     APPOINTMENT_REMINDER, patient, patient, about, start - offset))
    await reconcile(ctx, about, APPOINTMENT_REMINDER, wanted, now)

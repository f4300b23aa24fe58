"""The notification task functions, the periodic sweep, and the post-write reactions that start them.

Tasks (arguments are ids):

* ``notifications.appointment_changed(appointment_id, version)`` — confirmations and reminders;
* ``notifications.care_plan_changed(care_plan_id)``, ``notifications.medication_changed(medication_request_id)``;
* ``notifications.dispatch(communication_request_id, as_of=None)`` — a due request → Communications;
* ``notifications.deliver(communication_id)`` — send one Communication (retried with back-off);
* ``notifications.sweep(as_of=None)`` — periodic (``FHIR_JOBS__SWEEP_INTERVAL_S``, at start-up too): dispatches
  every active request due by ``as_of`` (default now) and re-queues Communications still to be sent, so nothing
  scheduled is lost when a process stops;
* ``notifications.extend_medication_reminders()`` — daily: moves the medication reminder horizon on.
"""

from __future__ import annotations

from typing import Any

from fhir_server.jobs import TASKS, JobContext, on_write, task
from fhir_server.storage.base import WriteOutcome
from fhir_server.workflows.notifications import _store, appointments, care, dispatch

SWEEP_LIMIT = 1000


@task("notifications.appointment_changed")
async def appointment_changed(ctx: JobContext, appointment_id: str, version: int) -> None:
    await appointments.appointment_changed(ctx, appointment_id, int(version))


@task("notifications.care_plan_changed")
async def care_plan_changed(ctx: JobContext, care_plan_id: str) -> None:
    await care.care_plan_changed(ctx, care_plan_id)


@task("notifications.medication_changed")
async def medication_changed(ctx: JobContext, medication_request_id: str) -> None:
    await care.medication_changed(ctx, medication_request_id)


@task("notifications.dispatch")
async def dispatch_request(ctx: JobContext, request_id: str, as_of: float | None = None) -> None:
    await dispatch.dispatch(ctx, request_id, as_of)


@task("notifications.deliver")
async def deliver(ctx: JobContext, communication_id: str) -> None:
    await dispatch.deliver(ctx, communication_id)


@task("notifications.sweep")
async def sweep(ctx: JobContext, as_of: float | None = None) -> None:
    now = ctx.now() if as_of is None else float(as_of)
    due = await _store.search(ctx, "CommunicationRequest", f"status=active&occurrence=le{_store.instant(now)}",
                              SWEEP_LIMIT)
    for stored, _ in due:
        await ctx.queue.enqueue("notifications.dispatch", stored.id, as_of, key=f"dispatch:{stored.id}")
    unsent = await _store.search(ctx, "Communication", "status=preparation,in-progress", SWEEP_LIMIT)
    for stored, _ in unsent:
        await ctx.queue.enqueue("notifications.deliver", stored.id, key=f"deliver:{stored.id}")


@task("notifications.extend_medication_reminders")
async def extend_medication_reminders(ctx: JobContext) -> None:
    for stored, _ in await _store.search(ctx, "MedicationRequest", "status=active"):
        await ctx.queue.enqueue("notifications.medication_changed", stored.id, key=f"medication:{stored.id}")


TASKS.every("notifications.sweep", lambda settings: settings.jobs.sweep_interval_s)
TASKS.every("notifications.extend_medication_reminders", 86400.0)


@on_write("Appointment")
async def on_appointment(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    if outcome.id and outcome.version is not None and resource is not None:
        version = outcome.version.version
        await ctx.queue.enqueue("notifications.appointment_changed", outcome.id, version,
                                key=f"appointment:{outcome.id}/{version}")


@on_write("CarePlan")
async def on_care_plan(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    if outcome.id:
        await ctx.queue.enqueue("notifications.care_plan_changed", outcome.id)


@on_write("MedicationRequest")
async def on_medication_request(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    if outcome.id:
        await ctx.queue.enqueue("notifications.medication_changed", outcome.id)

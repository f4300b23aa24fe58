"""Background work of scheduling: slot generation (per role, on availability changes and daily for the rolling
horizon) and the expiry of holds.  Task arguments are ids; tasks act as the system (unscoped services)."""

from __future__ import annotations

from typing import Any

from fhir_server.jobs.context import JobContext
from fhir_server.jobs.hooks import on_write
from fhir_server.jobs.registry import TASKS, task
from fhir_server.storage.base import WriteOutcome
from fhir_server.workflows.scheduling import Scheduling
from fhir_server.workflows.scheduling._model import hold_of
from fhir_server.workflows.scheduling._store import search_all
from fhir_server.workflows.scheduling.booking import RELEASE_TASK

GENERATE_TASK = "scheduling.generate_slots"
GENERATE_ALL_TASK = "scheduling.generate_slots_all"
SWEEP_HOLDS_TASK = "scheduling.release_lapsed_holds"


def _scheduling(ctx: JobContext) -> Scheduling:
    return Scheduling.of(ctx.resources, ctx.search, ctx.settings.scheduling, ctx.queue)


@task(GENERATE_TASK)
async def generate_slots(ctx: JobContext, practitioner_role_id: str) -> None:
    """Bring the role's Schedule and Slots in line with its availability (idempotent)."""
    await _scheduling(ctx).generator.generate(practitioner_role_id)


@task(GENERATE_ALL_TASK)
async def generate_slots_all(ctx: JobContext) -> None:
    """The rolling horizon: one generation job per PractitionerRole (periodic)."""
    deps = _scheduling(ctx).deps
    async for role in search_all(deps, "PractitionerRole", []):
        rid = role.resource["id"]
        await ctx.queue.enqueue(GENERATE_TASK, rid, key=f"slots:{rid}")


TASKS.every(GENERATE_ALL_TASK, lambda settings: float(settings.scheduling.regenerate_interval_s))


@task(RELEASE_TASK)
async def release_hold(ctx: JobContext, appointment_id: str) -> None:
    """At a hold's expiry: cancel the pending Appointment and free its Slot, unless it was booked meanwhile."""
    await _scheduling(ctx).booking.release_lapsed_hold(appointment_id)


@task(SWEEP_HOLDS_TASK)
async def release_lapsed_holds(ctx: JobContext) -> None:
    """Periodic: a hold whose expiry job was lost (the in-process queue does not survive a restart) is released
    all the same — a lapsed hold already never blocks a booking, this frees the Slot for $find again."""
    deps = _scheduling(ctx).deps
    async for slot in search_all(deps, "Slot", [("status", "busy-tentative")]):
        hold = hold_of(slot.resource)
        if hold is not None and hold[1] <= ctx.now():
            await ctx.queue.enqueue(RELEASE_TASK, hold[0], key=f"hold:{hold[0]}")


TASKS.every(SWEEP_HOLDS_TASK, 300.0)


@on_write("PractitionerRole")
async def availability_changed(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    """A role's availability (or the role) changed: regenerate its slots (the version keys out duplicates only, so
    a change made while an earlier generation runs is not lost)."""
    if outcome.id is None:
        return
    version = outcome.version.version if outcome.version is not None else 0
    await ctx.queue.enqueue(GENERATE_TASK, outcome.id, key=f"slots:{outcome.id}:{version}")

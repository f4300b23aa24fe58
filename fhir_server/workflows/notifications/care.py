"""Follow-up reminders from CarePlan activities and medication reminders from MedicationRequest dosage timing.

* CarePlan (``status = active``): each activity whose ``detail.status`` is ``not-started`` or ``scheduled`` and
  that has a time (``detail.scheduledPeriod.start``, or ``detail.scheduledTiming.event``) gets a
  ``follow-up-reminder`` to the subject ``offset`` before it, for each reminder offset (as appointments).
* MedicationRequest (``status = active``): a ``medication-reminder`` at each dose time within the next
  ``FHIR_NOTIFY__MEDICATION_HORIZON_DAYS`` (extended daily): ``timing.event`` times; or ``repeat.timeOfDay`` (UTC)
  every ``period`` days; or ``repeat.frequency`` per ``period`` ``periodUnit`` (h, d, wk) from
  ``repeat.boundsPeriod.start`` (else ``authoredOn``); never past ``boundsPeriod.end``.

Any other status, or a change of times, revokes the reminders no longer asked for.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fhir_server.workflows.notifications import _store, preferences
from fhir_server.workflows.notifications._codes import FOLLOW_UP_REMINDER, MEDICATION_REMINDER
from fhir_server.workflows.notifications.requests import Wanted, reconcile

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext

MAX_DOSES = 200
_UNIT_S = {"s": 1, "min": 60, "h": 3600, "d": 86400, "wk": 604800}


async def care_plan_changed(ctx: JobContext, plan_id: str) -> list[str]:
    about = f"CarePlan/{plan_id}"
    found = await _store.read(ctx, about)
    now = ctx.now()
    wanted: list[Wanted] = []
    if found is not None and found[1].get("status") == "active":
        plan = found[1]
        patient = _store.reference_of(plan, "subject")
        if patient and patient.startswith("Patient/"):
            person = await _store.read(ctx, patient)
            offsets = preferences.reminder_offsets(person[1] if person else None, ctx.settings.notify.reminder_offsets)
            for index, activity in enumerate(plan.get("activity") or ()):
                for at in _activity_times(activity.get("detail") or {}):
                    for offset in offsets:
                        due = _store.epoch_of(at) - offset
                        if due > now:
                            wanted.append(Wanted(f"{about}/{index}/{at}/{int(offset)}s", FOLLOW_UP_REMINDER,
                                                 patient, patient, about, due))
    return await reconcile(ctx, about, FOLLOW_UP_REMINDER, wanted, now)


def _activity_times(detail: dict[str, Any]) -> list[str]:
    if detail.get("status") not in ("not-started", "scheduled"):
        return []
    period = detail.get("scheduledPeriod") or {}
    if period.get("start"):
        return [str(period["start"])]
    return [str(e) for e in (detail.get("scheduledTiming") or {}).get("event") or ()]


async def medication_changed(ctx: JobContext, request_id: str) -> list[str]:
    about = f"MedicationRequest/{request_id}"
    found = await _store.read(ctx, about)
    now = ctx.now()
    wanted: list[Wanted] = []
    if found is not None and found[1].get("status") == "active":
        request = found[1]
        patient = _store.reference_of(request, "subject")
        if patient and patient.startswith("Patient/"):
            horizon = now + ctx.settings.notify.medication_horizon_days * 86400
            for at in dose_times(request, now, horizon):
                wanted.append(Wanted(f"{about}/{_store.instant(at)}", MEDICATION_REMINDER, patient, patient,
                                     about, at))
    return await reconcile(ctx, about, MEDICATION_REMINDER, wanted, now)


def dose_times(request: dict[str, Any], start: float, end: float) -> list[float]:
    """Dose times in ``(start, end]`` from every dosage instruction, sorted, at most ``MAX_DOSES``."""
    times: set[float] = set()
    for dosage in request.get("dosageInstruction") or ():
        timing = dosage.get("timing") or {}
        times.update(t for t in (_store.epoch_of(e) for e in timing.get("event") or ()) if start < t <= end)
        repeat = timing.get("repeat")
        if isinstance(repeat, dict):
            times.update(_repeat_times(repeat, request.get("authoredOn"), start, end))
    return sorted(times)[:MAX_DOSES]


def _repeat_times(repeat: dict[str, Any], authored: str | None, start: float, end: float) -> list[float]:
    bounds = repeat.get("boundsPeriod") or {}
    first = _store.epoch_of(bounds["start"]) if bounds.get("start") else (
        _store.epoch_of(authored) if authored else start)
    if bounds.get("end"):
        end = min(end, _store.epoch_of(bounds["end"]))
    if repeat.get("timeOfDay"):
        every_days = max(1, int(repeat.get("period") or 1)) if repeat.get("periodUnit", "d") == "d" else 1
        return _daily(repeat["timeOfDay"], every_days, first, start, end)
    unit = _UNIT_S.get(str(repeat.get("periodUnit") or ""))
    frequency, period = repeat.get("frequency") or 1, repeat.get("period")
    if unit is None or not period or float(period) <= 0:
        return []
    step = float(period) * unit / max(1, int(frequency))
    k = max(0, math.floor((start - first) / step) + 1)
    out: list[float] = []
    while len(out) < MAX_DOSES and (t := first + k * step) <= end:
        if t > start:
            out.append(t)
        k += 1
    return out


def _daily(times_of_day: list[str], every_days: int, first: float, start: float, end: float) -> list[float]:
    day0 = datetime.fromtimestamp(first, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    skip = max(0, int((start - day0.timestamp()) // 86400) // every_days * every_days)
    out: list[float] = []
    day = day0 + timedelta(days=skip)
    while day.timestamp() <= end and len(out) < MAX_DOSES:
        for text in times_of_day:
            hh, mm, ss = (int(p) for p in [*str(text).split(":"), "0", "0"][:3])
            t = (day + timedelta(hours=hh, minutes=mm, seconds=ss)).timestamp()
            if max(start, first - 1) < t <= end:
                out.append(t)
        day += timedelta(days=every_days)
    return out

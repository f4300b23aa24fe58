"""PractitionerRole availability → the slot times of a horizon.  Pure: no store, no clock.

* ``availableTime``: on its ``daysOfWeek`` (every day when absent), from ``availableStartTime`` to
  ``availableEndTime`` (``allDay``: the whole day), in the hospital's time zone (``FHIR_SCHEDULING__TIMEZONE``):
  R4 times carry no zone, so 09:00 means nine o'clock local time, summer and winter.  The span is cut into slots of
  the role's length (the ``slot-minutes`` extension, else ``FHIR_SCHEDULING__SLOT_MINUTES``); a remainder shorter
  than a slot is left out.
* ``notAvailable.during``: no slot that overlaps it (a date without a time is that local day; no end: from then on).
* ``period``: only slots inside it; ``active: false``: no slots at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.indexing._norm_date import date_interval

SLOT_MINUTES_URL = "https://infirmary.example.org/fhir/StructureDefinition/slot-minutes"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INF = float("inf")


@dataclass(frozen=True, order=True)
class SlotTime:
    start: datetime  # aware, UTC
    end: datetime


def slot_minutes(role: Mapping[str, Any], default: int) -> int:
    for ext in role.get("extension", ()):
        if ext.get("url") == SLOT_MINUTES_URL and isinstance(ext.get("valuePositiveInt"), int):
            return int(ext["valuePositiveInt"])
    return default


def slot_times(role: Mapping[str, Any], start: datetime, end: datetime, zone: ZoneInfo,
               default_minutes: int) -> list[SlotTime]:
    """The slots the role offers that start in ``[start, end)`` (aware datetimes), in time order."""
    if role.get("active") is False:
        return []
    minutes = slot_minutes(role, default_minutes)
    blocked = [_local_interval(na.get("during"), zone) for na in role.get("notAvailable", ())]
    period = _local_interval(role.get("period"), zone) if role.get("period") else (-_INF, _INF)
    low, high = start.timestamp(), end.timestamp()
    out: set[SlotTime] = set()
    for slot in _candidates(role.get("availableTime", ()), start, end, zone, minutes):
        s, e = slot.start.timestamp(), slot.end.timestamp()
        if not low <= s < high or s < period[0] or e > period[1]:
            continue
        if any(b[0] < e and s < b[1] for b in blocked):
            continue
        out.add(slot)
    return sorted(out)


def _candidates(available: Any, start: datetime, end: datetime, zone: ZoneInfo,
                minutes: int) -> Iterator[SlotTime]:
    step = timedelta(minutes=minutes)
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    day = first
    while day <= last:
        code = DAYS[day.weekday()]
        for spec in available:
            days = spec.get("daysOfWeek")
            if days and code not in days:
                continue
            yield from _day_slots(spec, day, zone, step)
        day += timedelta(days=1)


def _day_slots(spec: Mapping[str, Any], day: date, zone: ZoneInfo, step: timedelta) -> Iterator[SlotTime]:
    begin: time = time(0)
    finish: time | None = None
    if not spec.get("allDay"):
        begin = _time(spec.get("availableStartTime"), None) or time(0)
        finish = _time(spec.get("availableEndTime"), None)
    local = datetime.combine(day, begin, zone)
    stop = datetime.combine(day + timedelta(days=1), time(0), zone) if finish is None else \
        datetime.combine(day, finish, zone)
    # walk in UTC so that a daylight-saving change inside the span neither repeats nor skips a slot
    current, limit = local.astimezone(UTC), stop.astimezone(UTC)
    while current + step <= limit:
        yield SlotTime(current, current + step)
        current += step


def _time(value: Any, default: time | None) -> time | None:
    if not isinstance(value, str):
        return default
    hour, minute, second = (int(p) for p in [*value.split(":"), "0", "0"][:3])
    if hour >= 24:
        return None
    return time(hour, minute, second)


def _local_interval(period: Any, zone: ZoneInfo) -> tuple[float, float]:
    """``[low, high)`` epoch seconds of a Period; dates without a time are local days."""
    if not isinstance(period, Mapping):
        return (_INF, _INF)  # no period: blocks nothing
    low = _edge(period.get("start"), zone, 0) if period.get("start") else -_INF
    high = _edge(period.get("end"), zone, 1) if period.get("end") else _INF
    return low, high


def _edge(value: Any, zone: ZoneInfo, side: int) -> float:
    if isinstance(value, str) and len(value) == 10:
        day = date.fromisoformat(value) + timedelta(days=side)
        return datetime.combine(day, time(0), zone).timestamp()
    interval = date_interval(value)
    if interval is None:
        return _INF if side == 0 else -_INF  # unreadable: treat as empty
    return interval[0] if "T" in value else interval[side]  # a time is the moment itself; a partial date its span

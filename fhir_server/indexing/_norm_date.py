"""``date`` parameter entries: every value becomes an interval ``[low, high)`` in epoch seconds (UTC).

* date, dateTime, instant: the interval their precision covers — ``2020`` the whole year, ``2020-03`` the
  month, ``2020-03-04`` the day, ``2020-03-04T10:00+02:00`` that minute (08:00-08:01 UTC), seconds the second,
  fractions their last digit (to microseconds, further digits are truncated).  No time zone means UTC.  The
  arithmetic matches ``datetime.timestamp()`` exactly (integer microseconds divided by 10**6), so the query
  side's ``fhir_server.search.dates`` gives the same floats.
* Period: ``[start.low, end.high)``; a missing start is ``-inf``, a missing end ``+inf`` (ongoing).
* Timing: per search.html#date only the outer limits count — one interval from the earliest ``event`` (or
  ``repeat.boundsPeriod.start``) to the latest ``event`` (or ``repeat.boundsPeriod.end``).
* Anything unparseable (or a calendar-invalid day) gives no entry rather than an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from fhir_server.indexing.entries import DateEntry, Entry

__all__ = ["DATE_NORMALISERS", "date_interval"]

Out = list[Entry]
Interval = tuple[float, float]
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CACHE_LIMIT = 50_000
_cache: dict[str, Interval | None] = {}


def _days(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _valid_day(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS_IN_MONTH[month - 1] + leap


def _parse(text: str) -> Interval | None:
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    y, m, d, hh, mm, ss, frac, tz = match.groups()
    year = int(y)
    if m is None:
        return _days(year, 1, 1) * 86400.0, _days(year + 1, 1, 1) * 86400.0
    month = int(m)
    if d is None:
        if not 1 <= month <= 12:
            return None
        following = _days(year + month // 12, month % 12 + 1, 1)
        return _days(year, month, 1) * 86400.0, following * 86400.0
    day = int(d)
    if not _valid_day(year, month, day):
        return None
    start = _days(year, month, day) * 86400
    if hh is None:
        return float(start), float(start + 86400)
    hour, minute = int(hh), int(mm)
    if hour > 23 or minute > 59:
        return None
    start += hour * 3600 + minute * 60 - _offset(tz)
    if ss is None:
        return float(start), float(start + 60)
    second = int(ss)
    if second > 60:
        return None
    start += second
    if frac is None:
        return float(start), float(start + 1)
    micro = int((frac + "000000")[:6])
    step = 10 ** max(0, 6 - len(frac))
    return (start * 1_000_000 + micro) / 1_000_000, (start * 1_000_000 + micro + step) / 1_000_000


def _offset(tz: str | None) -> int:
    if tz is None or tz == "Z":
        return 0
    seconds = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
    return seconds if tz[0] == "+" else -seconds


def date_interval(text: Any) -> Interval | None:
    """``[low, high)`` of a date/dateTime/instant string, or None when it is not one (cached)."""
    if type(text) is not str:
        return None
    found = _cache.get(text, False)
    if found is False:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        found = _cache[text] = _parse(text)
    return found  # type: ignore[return-value]


def _period_interval(value: Any) -> Interval | None:
    if type(value) is not dict:
        return None
    start, end = value.get("start"), value.get("end")
    if start is None and end is None:
        return None
    low = high = None
    if start is not None:
        found = date_interval(start)
        if found is None:
            return None
        low = found[0]
    if end is not None:
        found = date_interval(end)
        if found is None:
            return None
        high = found[1]
    return (-math.inf if low is None else low), (math.inf if high is None else high)


def _timing_interval(value: Any) -> Interval | None:
    if type(value) is not dict:
        return None
    intervals: list[Interval | None] = []
    events = value.get("event")
    if type(events) is list:
        intervals.extend(date_interval(event) for event in events)
    repeat = value.get("repeat")
    if type(repeat) is dict and "boundsPeriod" in repeat:
        intervals.append(_period_interval(repeat["boundsPeriod"]))
    found = [i for i in intervals if i is not None]
    if not found:
        return None
    return min(i[0] for i in found), max(i[1] for i in found)


def _entry(interval_of: Callable[[Any], Interval | None]) -> Callable[[str, Any, dict[str, Any], Out], None]:
    def date(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
        interval = interval_of(value)
        if interval is not None:
            out.append(DateEntry(param, interval[0], interval[1]))

    return date


DATE_NORMALISERS: dict[str, Callable[[str, Any, dict[str, Any], Out], None]] = {
    **dict.fromkeys(("date", "dateTime", "instant"), _entry(date_interval)),
    "Period": _entry(_period_interval),
    "Timing": _entry(_timing_interval),
}

"""FHIR date, dateTime and instant values as time periods (their implicit precision ranges)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_DATE_TIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _add_months(value: datetime, months: int) -> datetime:
    total = value.month - 1 + months
    return value.replace(year=value.year + total // 12, month=total % 12 + 1)


def parse_period(text: str) -> tuple[datetime, datetime]:
    """``2020`` → [2020-01-01, 2021-01-01); ``2020-03-04T10:00Z`` → [10:00, 10:01); ...

    Values without a time zone are taken as UTC.  Raises ValueError for anything that is not a FHIR
    date/dateTime/instant.
    """
    match = _DATE_TIME.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    year = int(g["y"])
    if g["m"] is None:
        start = datetime(year, 1, 1, tzinfo=tz)
        return start, start.replace(year=year + 1)
    month = int(g["m"])
    if g["d"] is None:
        start = datetime(year, month, 1, tzinfo=tz)
        return start, _add_months(start, 1)
    day = int(g["d"])
    if g["H"] is None:
        start = datetime(year, month, day, tzinfo=tz)
        return start, start + timedelta(days=1)
    hour, minute = int(g["H"]), int(g["M"])
    if g["S"] is None:
        start = datetime(year, month, day, hour, minute, tzinfo=tz)
        return start, start + timedelta(minutes=1)
    second = int(g["S"])
    frac = g["f"] or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    step = timedelta(microseconds=10 ** max(0, 6 - (len(frac) - 1))) if frac else timedelta(seconds=1)
    return start, start + step

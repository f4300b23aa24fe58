"""PractitionerRole availability → slot times (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fhir_server.workflows.scheduling.availability import SLOT_MINUTES_URL, slot_times

UTC_ZONE = ZoneInfo("UTC")
MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday


def _role(**extra: object) -> dict[str, object]:
    return {"resourceType": "PractitionerRole", "availableTime": [
        {"daysOfWeek": ["mon", "wed"], "availableStartTime": "09:00:00", "availableEndTime": "11:00:00"}], **extra}


def _starts(role: dict[str, object], days: int = 7, zone: ZoneInfo = UTC_ZONE, start: datetime = MONDAY,
            minutes: int = 30) -> list[str]:
    return [t.start.strftime("%a %H:%M") for t in slot_times(role, start, start + timedelta(days=days), zone, minutes)]


def test_days_hours_and_length() -> None:
    assert _starts(_role()) == ["Mon 09:00", "Mon 09:30", "Mon 10:00", "Mon 10:30",
                                "Wed 09:00", "Wed 09:30", "Wed 10:00", "Wed 10:30"]
    assert len(_starts(_role(), minutes=45)) == 4  # 09:00, 09:45 per day; 10:30-11:15 does not fit
    ext = {"extension": [{"url": SLOT_MINUTES_URL, "valuePositiveInt": 60}]}
    assert _starts(_role(**ext)) == ["Mon 09:00", "Mon 10:00", "Wed 09:00", "Wed 10:00"]


def test_not_available_period_and_inactive() -> None:
    blocked = _role(notAvailable=[{"description": "leave", "during": {"start": "2026-12-02", "end": "2026-12-02"}},
                                  {"description": "meeting", "during": {"start": "2026-11-30T09:15:00Z",
                                                                        "end": "2026-11-30T10:00:00Z"}}])
    assert _starts(blocked) == ["Mon 10:00", "Mon 10:30"]  # Wed is a whole day off; 09:00 and 09:30 overlap
    assert _starts(_role(period={"start": "2026-12-01"})) == ["Wed 09:00", "Wed 09:30", "Wed 10:00", "Wed 10:30"]
    assert _starts(_role(active=False)) == []


def test_local_time_across_a_daylight_saving_change() -> None:
    london = ZoneInfo("Europe/London")
    role = {"availableTime": [{"availableStartTime": "09:00:00", "availableEndTime": "10:00:00"}]}
    start = datetime(2026, 3, 28, tzinfo=UTC)  # British Summer Time starts on Sunday 29 March 2026
    slots = slot_times(role, start, start + timedelta(days=2), london, 30)
    assert [t.start.strftime("%d %H:%M") for t in slots] == ["28 09:00", "28 09:30", "29 08:00", "29 08:30"]


def test_all_day_and_horizon_edges() -> None:
    role = {"availableTime": [{"daysOfWeek": ["tue"], "allDay": True}]}
    slots = slot_times(role, MONDAY + timedelta(days=1, hours=22), MONDAY + timedelta(days=3), UTC_ZONE, 60)
    assert [t.start.strftime("%a %H:%M") for t in slots] == ["Tue 22:00", "Tue 23:00"]


def test_the_hospital_time_zone_must_exist() -> None:
    import pytest
    from pydantic import ValidationError

    from fhir_server.settings import SchedulingSettings

    assert SchedulingSettings(timezone="Europe/London").timezone == "Europe/London"
    with pytest.raises(ValidationError, match="IANA time zone"):
        SchedulingSettings(timezone="Mars/Olympus_Mons")

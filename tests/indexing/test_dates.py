"""Date parameters: intervals from the precision of the value; Period, Timing; agreement with the query side."""

from __future__ import annotations

import math
from calendar import timegm
from typing import Any

import pytest

from fhir_server.indexing._norm_date import date_interval
from fhir_server.indexing.entries import DateEntry
from fhir_server.search.dates import parse_period
from tests.indexing._helpers import entries


def _t(*parts: int) -> float:
    return float(timegm((*parts, *(0,) * (6 - len(parts)), 0, 0, 0)))


def test_birth_year_is_the_whole_year() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1980"}
    assert entries(patient, "birthdate") == [DateEntry("birthdate", _t(1980, 1, 1), _t(1981, 1, 1))]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2020", _t(2020, 1, 1), _t(2021, 1, 1)),
        ("2020-02", _t(2020, 2, 1), _t(2020, 3, 1)),
        ("2020-12", _t(2020, 12, 1), _t(2021, 1, 1)),
        ("2020-02-29", _t(2020, 2, 29), _t(2020, 3, 1)),
        ("2020-03-04T10:00+02:00", _t(2020, 3, 4, 8, 0), _t(2020, 3, 4, 8, 1)),
        ("2020-03-04T10:00:05Z", _t(2020, 3, 4, 10, 0, 5), _t(2020, 3, 4, 10, 0, 6)),
        ("2020-03-04T10:00:05", _t(2020, 3, 4, 10, 0, 5), _t(2020, 3, 4, 10, 0, 6)),  # no zone: UTC
        ("2020-03-04T23:30:00-05:00", _t(2020, 3, 5, 4, 30), _t(2020, 3, 5, 4, 30, 1)),
        ("2020-03-04T10:00:05.25Z", _t(2020, 3, 4, 10, 0, 5) + 0.25, _t(2020, 3, 4, 10, 0, 5) + 0.26),
        ("1900-01-01", _t(1900, 1, 1), _t(1900, 1, 2)),
    ],
)
def test_precision_intervals(text: str, low: float, high: float) -> None:
    assert date_interval(text) == (low, high)


@pytest.mark.parametrize(
    "text",
    ["2021", "1969-07", "2020-03-04", "2020-03-04T10:00+02:00", "2011-07-09T01:01:27+00:00",
     "2011-07-09T01:01:27.523+00:00", "2020-03-04T10:00:05.123456789Z", "0001-01-01"],
)  # fmt: skip
def test_same_floats_as_the_query_side(text: str) -> None:
    low, high = parse_period(text)
    assert date_interval(text) == (low.timestamp(), high.timestamp())


@pytest.mark.parametrize("text", ["2020-02-30", "2020-13", "20201", "2020-03-04T25:00Z", "yesterday", ""])
def test_invalid_dates_give_nothing(text: str) -> None:
    assert date_interval(text) is None
    assert entries({"resourceType": "Patient", "birthDate": text}, "birthdate") == []


def test_period_with_open_ends() -> None:
    encounter = {"resourceType": "Encounter", "period": {"start": "2020-01-01T08:00:00Z"}}
    assert entries(encounter, "date") == [DateEntry("date", _t(2020, 1, 1, 8), math.inf)]
    encounter = {"resourceType": "Encounter", "period": {"end": "2020-01-02"}}
    assert entries(encounter, "date") == [DateEntry("date", -math.inf, _t(2020, 1, 3))]
    encounter = {"resourceType": "Encounter", "period": {"start": "2020-01-01", "end": "2020-01-02"}}
    assert entries(encounter, "date") == [DateEntry("date", _t(2020, 1, 1), _t(2020, 1, 3))]


def test_choice_dates_and_instants() -> None:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "effectiveDateTime": "2021-06-01",
        "issued": "2021-06-02T10:00:00Z",
    }
    assert entries(observation, "date") == [DateEntry("date", _t(2021, 6, 1), _t(2021, 6, 2))]
    observation = {
        "resourceType": "Observation",
        "effectivePeriod": {"start": "2021-06-01", "end": "2021-06-03"},
    }
    assert entries(observation, "date") == [DateEntry("date", _t(2021, 6, 1), _t(2021, 6, 4))]
    observation = {"resourceType": "Observation", "effectiveInstant": "2021-06-01T10:00:00.000Z"}
    assert entries(observation, "date") == [DateEntry("date", _t(2021, 6, 1, 10), _t(2021, 6, 1, 10) + 0.001)]


def test_timing_counts_only_its_outer_limits() -> None:
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [{"timing": {"event": ["2021-01-05", "2021-01-02T10:00:00Z"],
                                          "repeat": {"boundsPeriod": {"start": "2021-01-01", "end": "2021-01-31"}}}}],
    }  # fmt: skip
    # MedicationRequest.date is authoredOn; the Timing is indexed by CarePlan.activity-date and others
    care_plan = {
        "resourceType": "CarePlan",
        "activity": [{"detail": {"scheduledTiming": request["dosageInstruction"][0]["timing"]}}],
    }
    assert entries(care_plan, "activity-date") == [DateEntry("activity-date", _t(2021, 1, 1), _t(2021, 2, 1))]
    events_only = {
        "resourceType": "CarePlan",
        "activity": [{"detail": {"scheduledTiming": {"event": ["2021-01-05"]}}}],
    }
    assert entries(events_only, "activity-date") == [
        DateEntry("activity-date", _t(2021, 1, 5), _t(2021, 1, 6))
    ]

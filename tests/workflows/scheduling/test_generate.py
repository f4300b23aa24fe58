"""Schedules and Slots generated from availability by the real job, and regenerated without disturbing bookings."""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from tests.workflows.scheduling.clinic import CARDIOLOGY, role
from tests.workflows.scheduling.conftest import Clinic


async def _slots(clinic: Clinic, schedule: str) -> dict[str, dict[str, Any]]:
    response = await clinic.http.get("/Slot", params={"schedule": f"Schedule/{schedule}", "_count": "1000"})
    return {e["resource"]["id"]: e["resource"] for e in response.json().get("entry", [])}


async def test_role_write_generates_schedule_and_slots(clinic: Clinic) -> None:
    schedule = (await clinic.http.get("/Schedule/role-card")).json()
    assert {a["reference"] for a in schedule["actor"]} == {"PractitionerRole/role-card", "Practitioner/prac-1",
                                                           "Location/loc-1"}
    assert schedule["specialty"][0]["coding"][0]["code"] == CARDIOLOGY
    slots = await _slots(clinic, "role-card")
    # 09:00-12:00 every day in 30-minute slots over a 7-day horizon (today's may have passed already)
    assert 36 <= len(slots) <= 42
    assert {s["status"] for s in slots.values()} == {"free"}
    some = next(iter(slots.values()))
    assert some["specialty"][0]["coding"][0]["code"] == CARDIOLOGY
    assert some["serviceType"] == [{"text": "Cardiology consultation"}]
    assert some["start"][11:16] in {"09:00", "09:30", "10:00", "10:30", "11:00", "11:30"}


async def test_regeneration_withdraws_and_reopens_but_never_touches_booked(clinic: Clinic) -> None:
    slots = await _slots(clinic, "role-card")
    late = sorted(i for i, s in slots.items() if s["start"][11:16] == "11:30")
    booked, withdrawn = late[0], late[1]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": f"Slot/{booked}"}},
        {"name": "patient", "valueReference": {"reference": "Patient/pat-1"}}]}
    assert (await clinic.http.post("/Appointment/$book", json=body)).status_code == 201

    shorter = role("role-card", "prac-1", CARDIOLOGY, end="11:30:00")  # the 11:30 slots are no longer offered
    await clinic.fhir.resources.update("PractitionerRole", "role-card", jsonio.dumps(shorter))
    await clinic.settle()
    after = await _slots(clinic, "role-card")
    assert after[booked]["status"] == "busy"  # the booking stands
    assert after[booked]["meta"]["versionId"] == "2"
    assert after[withdrawn]["status"] == "busy-unavailable"
    assert {t["code"] for t in after[withdrawn]["meta"]["tag"]} == {"generated", "withdrawn"}
    assert all(s["status"] == "free" for i, s in after.items() if s["start"][11:16] != "11:30")

    restored = role("role-card", "prac-1", CARDIOLOGY)
    await clinic.fhir.resources.update("PractitionerRole", "role-card", jsonio.dumps(restored))
    await clinic.settle()
    again = await _slots(clinic, "role-card")
    assert again[withdrawn]["status"] == "free"
    assert again[booked]["status"] == "busy"
    assert len(again) == len(slots)  # no duplicates: the same ids came back


async def test_rolling_horizon_extends_with_the_clock(clinic: Clinic) -> None:
    before = await _slots(clinic, "role-card")
    clinic.clock.advance(3 * 86_400)  # three days later: the daily periodic job extends every role's slots
    await clinic.settle()
    after = await _slots(clinic, "role-card")
    assert max(s["start"] for s in after.values()) > max(s["start"] for s in before.values())
    schedule = (await clinic.http.get("/Schedule/role-card")).json()
    assert schedule["planningHorizon"]["end"] > max(s["start"] for s in before.values())[:10]

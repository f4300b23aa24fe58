"""The whole booking flow through the API: $find → $book → $reschedule → $cancel, with the Slot states checked at
each step; holds and their expiry under the job clock; bad input named in the OperationOutcome."""

from __future__ import annotations

from typing import Any

import httpx

from tests.workflows.scheduling.clinic import CARDIOLOGY, DERMATOLOGY
from tests.workflows.scheduling.conftest import Clinic


def params(**values: Any) -> dict[str, Any]:
    parts = []
    for name, value in values.items():
        name = name if name.startswith("_") else name.replace("_", "-")
        if isinstance(value, dict):
            parts.append({"name": name, **value})
        elif "/" in str(value):
            parts.append({"name": name, "valueReference": {"reference": value}})
        else:
            parts.append({"name": name, "valueString": str(value)})
    return {"resourceType": "Parameters", "parameter": parts}


def out(response: httpx.Response, name: str) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/fhir+json")
    found: dict[str, Any] = next(p["resource"] for p in response.json()["parameter"] if p["name"] == name)
    return found


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    first: dict[str, Any] = body["issue"][0]
    return first


async def _find(clinic: Clinic, **query: str) -> list[dict[str, Any]]:
    response = await clinic.http.get("/Appointment/$find", params=query)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


async def _confirmations(clinic: Clinic, appointment_id: str) -> set[tuple[str, str]]:
    """(kind, recipient) of the Communications sent about the appointment (the notifications workflow reacts to
    the Appointment writes through the post-write hook; in-app delivery always happens)."""
    await clinic.settle()
    bundle = (await clinic.http.get("/Communication", params={"status": "completed", "_count": "500"})).json()
    about = {"reference": f"Appointment/{appointment_id}"}
    return {(e["resource"]["category"][0]["coding"][0]["code"], e["resource"]["recipient"][0]["reference"])
            for e in bundle.get("entry", []) if about in e["resource"].get("about", [])}


async def test_find_book_reschedule_cancel(clinic: Clinic) -> None:
    proposals = await _find(clinic, specialty=f"http://snomed.info/sct|{CARDIOLOGY}", _count="5")
    assert len(proposals) == 5
    assert [p["start"] for p in proposals] == sorted(p["start"] for p in proposals)
    first = proposals[0]
    assert first["status"] == "proposed"
    assert {p["actor"]["reference"] for p in first["participant"]} == {
        "PractitionerRole/role-card", "Practitioner/prac-1", "Location/loc-1"}
    slot_id = first["slot"][0]["reference"].split("/")[1]
    assert (await clinic.slot(slot_id))["status"] == "free"

    # book: the proposal with the patient added
    proposal = {**first, "participant": [{"actor": {"reference": "Patient/pat-1"}}, *first["participant"]],
                "comment": "chest pain on exertion"}
    booked = await clinic.http.post("/Appointment/$book", json=params(appointment={"resource": proposal}))
    assert booked.status_code == 201, booked.text
    appointment = out(booked, "appointment")
    assert appointment["status"] == "booked"
    assert appointment["comment"] == "chest pain on exertion"
    actors = {p["actor"]["reference"]: p["status"] for p in appointment["participant"]}
    assert actors["Patient/pat-1"] == actors["Practitioner/prac-1"] == "accepted"
    assert out(booked, "slot")["status"] == "busy"
    assert (await clinic.slot(slot_id))["status"] == "busy"
    assert slot_id not in {p["slot"][0]["reference"].split("/")[1]
                           for p in await _find(clinic, specialty=CARDIOLOGY, _count="50")}
    aid = appointment["id"]
    stored = (await clinic.http.get(f"/Appointment/{aid}")).json()
    assert stored["status"] == "booked" and stored["slot"] == [{"reference": f"Slot/{slot_id}"}]
    assert {("appointment-booked", "Patient/pat-1"),
            ("appointment-booked", "Practitioner/prac-1")} <= await _confirmations(clinic, aid)

    # reschedule to a dermatology slot of another practitioner: one atomic swap
    other = (await _find(clinic, specialty=DERMATOLOGY, _count="1"))[0]
    new_slot = other["slot"][0]["reference"].split("/")[1]
    moved = await clinic.http.post(f"/Appointment/{aid}/$reschedule",
                                   json=params(slot=f"Slot/{new_slot}", reason={"valueString": "patient asked"}))
    assert moved.status_code == 200, moved.text
    moved_appointment = out(moved, "appointment")
    assert moved_appointment["start"] == other["start"]
    assert moved_appointment["slot"] == [{"reference": f"Slot/{new_slot}"}]
    assert "Practitioner/prac-2" in {p["actor"]["reference"] for p in moved_appointment["participant"]}
    assert "Practitioner/prac-1" not in {p["actor"]["reference"] for p in moved_appointment["participant"]}
    assert out(moved, "released")["status"] == "free"
    assert (await clinic.slot(slot_id))["status"] == "free"
    assert (await clinic.slot(new_slot))["status"] == "busy"
    assert {("appointment-rescheduled", "Patient/pat-1"),
            ("appointment-rescheduled", "Practitioner/prac-2")} <= await _confirmations(clinic, aid)

    # cancel: the slot is free again and the reason is recorded
    cancelled = await clinic.http.post(f"/Appointment/{aid}/$cancel", json=params(
        reason={"valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                                                     "code": "pat", "display": "Patient"}]}}))
    assert cancelled.status_code == 200, cancelled.text
    final = out(cancelled, "appointment")
    assert final["status"] == "cancelled"
    assert final["cancelationReason"]["coding"][0]["code"] == "pat"
    assert (await clinic.slot(new_slot))["status"] == "free"
    assert (await clinic.slot(slot_id))["status"] == "free"
    assert {("appointment-cancelled", "Patient/pat-1"),
            ("appointment-cancelled", "Practitioner/prac-2")} <= await _confirmations(clinic, aid)
    again = await clinic.http.post(f"/Appointment/{aid}/$cancel", json=params(reason="again"))
    assert again.status_code == 409 and issue(again)["code"] == "conflict"
    history = (await clinic.http.get(f"/Appointment/{aid}/_history")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["cancelled", "booked", "booked"]


async def test_book_with_slot_and_patient_and_double_booking_is_409(clinic: Clinic) -> None:
    slot = (await _find(clinic, practitioner="Practitioner/prac-2", _count="1"))[0]["slot"][0]["reference"]
    first = await clinic.http.post("/Appointment/$book", json=params(slot=slot, patient="Patient/pat-1"))
    assert first.status_code == 201, first.text
    second = await clinic.http.post("/Appointment/$book", json=params(slot=slot, patient="Patient/pat-2"))
    assert second.status_code == 409
    assert issue(second)["code"] == "conflict" and issue(second)["expression"] == ["slot"]
    found = await clinic.http.get("/Appointment", params={"slot": slot})
    assert len(found.json()["entry"]) == 1


async def test_hold_then_book_by_the_holder_and_others_wait(clinic: Clinic) -> None:
    slot = (await _find(clinic, location="Location/loc-1", _count="1"))[0]["slot"][0]["reference"]
    held = await clinic.http.post("/Appointment/$hold", json=params(slot=slot, patient="Patient/pat-1", minutes="5"))
    assert held.status_code == 201, held.text
    pending = out(held, "appointment")
    assert pending["status"] == "pending"
    held_slot = out(held, "slot")
    assert held_slot["status"] == "busy-tentative"
    assert held_slot["extension"][0]["url"].endswith("/slot-hold")

    other = await clinic.http.post("/Appointment/$book", json=params(slot=slot, patient="Patient/pat-2"))
    assert other.status_code == 409 and issue(other)["expression"] == ["slot"]
    assert slot not in {p["slot"][0]["reference"] for p in await _find(clinic, location="Location/loc-1")}

    booked = await clinic.http.post("/Appointment/$book",
                                    json=params(appointment={"resource": {"resourceType": "Appointment",
                                                                          "id": pending["id"], "status": "pending",
                                                                          "participant": []}}))
    assert booked.status_code == 200, booked.text
    appointment = out(booked, "appointment")
    assert appointment["id"] == pending["id"] and appointment["status"] == "booked"
    assert out(booked, "slot")["status"] == "busy" and "extension" not in out(booked, "slot")

    clinic.clock.advance(600)  # the expiry job finds the hold booked: nothing to release
    await clinic.settle()
    assert (await clinic.http.get(f"/Appointment/{pending['id']}")).json()["status"] == "booked"
    assert (await clinic.slot(slot.split("/")[1]))["status"] == "busy"


async def test_a_hold_lapses_at_its_expiry(clinic: Clinic) -> None:
    slot = (await _find(clinic, specialty=DERMATOLOGY, _count="1"))[0]["slot"][0]["reference"]
    held = await clinic.http.post("/Appointment/$hold", json=params(slot=slot, patient="Patient/pat-1", minutes="2"))
    pending = out(held, "appointment")
    clinic.clock.advance(60)
    await clinic.settle()
    assert (await clinic.slot(slot.split("/")[1]))["status"] == "busy-tentative"  # not yet
    clinic.clock.advance(90)
    await clinic.settle()
    freed = await clinic.slot(slot.split("/")[1])
    assert freed["status"] == "free" and "extension" not in freed
    lapsed = (await clinic.http.get(f"/Appointment/{pending['id']}")).json()
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"]["coding"][0]["code"] == "hold-expired"
    late = await clinic.http.post("/Appointment/$book", json=params(
        appointment={"resource": {"resourceType": "Appointment", "id": pending["id"], "status": "pending",
                                  "participant": []}}))
    assert late.status_code == 409 and issue(late)["expression"] == ["appointment"]
    # another patient takes the freed slot
    taken = await clinic.http.post("/Appointment/$book", json=params(slot=slot, patient="Patient/pat-2"))
    assert taken.status_code == 201


async def test_bad_input_names_the_parameter(clinic: Clinic) -> None:
    slot = (await _find(clinic, _count="1"))[0]["slot"][0]["reference"]
    cases = [
        ("/Appointment/$book", params(slot=slot), 400, "patient"),
        ("/Appointment/$book", params(patient="Patient/pat-1"), 400, "slot"),
        ("/Appointment/$book", params(slot="Patient/pat-1", patient="Patient/pat-1"), 400, "slot"),
        ("/Appointment/$book", params(slot=slot, patient="Patient/nobody"), 404, "patient"),
        ("/Appointment/$book", params(slot="Slot/nothing-here", patient="Patient/pat-1"), 404, "slot"),
        ("/Appointment/$book", params(slot=slot, patient="Patient/pat-1", colour="blue"), 400, "colour"),
        ("/Appointment/$hold", params(slot=slot, patient="Patient/pat-1", minutes="100000"), 400, "minutes"),
        ("/Appointment/$find", params(start="yesterday"), 400, "start"),
        ("/Appointment/$find", params(start="2027-01-02", end="2027-01-01"), 400, "end"),
        ("/Appointment/$find", params(_count="0"), 400, "_count"),
    ]
    for url, body, status, name in cases:
        response = await clinic.http.post(url, json=body)
        assert response.status_code == status, (name, response.text)
        assert issue(response)["expression"] == [name], (name, response.text)
    response = await clinic.http.post("/Appointment/$book", json={"resourceType": "Patient"})
    assert response.status_code == 400 and issue(response)["expression"] == ["resourceType"]
    missing = await clinic.http.post("/Appointment/nope/$cancel", json=params(reason="x"))
    assert missing.status_code == 404
    no_reason = await clinic.http.post("/Appointment/nope/$cancel", json=params())
    assert no_reason.status_code == 400 and issue(no_reason)["expression"] == ["reason"]
    # nothing was written by any of them
    assert (await clinic.slot(slot.split("/")[1]))["status"] == "free"
    assert "entry" not in (await clinic.http.get("/Appointment")).json()


async def test_find_pages_and_filters(clinic: Clinic) -> None:
    page = await clinic.http.get("/Appointment/$find", params={"practitioner": "Practitioner/prac-1",
                                                               "_count": "4"})
    bundle = page.json()
    assert len(bundle["entry"]) == 4
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    second = (await clinic.http.get(following.replace("http://testserver/fhir", ""))).json()
    first_starts = [e["resource"]["start"] for e in bundle["entry"]]
    second_starts = [e["resource"]["start"] for e in second["entry"]]
    assert max(first_starts) < min(second_starts)
    assert await _find(clinic, practitioner="Practitioner/prac-1", specialty=DERMATOLOGY) == []
    assert await _find(clinic, location="Location/nowhere") == []
    window = await _find(clinic, specialty=DERMATOLOGY, start=second_starts[0][:10],
                         end=second_starts[0][:10] + "T23:59:59Z", _count="50")
    assert {p["start"][:10] for p in window} == {second_starts[0][:10]}
    posted = await clinic.http.post("/Appointment/$find", json=params(**{"service_type": "Dermatology consultation"}))
    assert posted.status_code == 200


async def test_capability_statement_lists_the_operations(clinic: Clinic) -> None:
    statement = (await clinic.http.get("/metadata")).json()
    appointment = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment")
    assert {op["name"] for op in appointment["operation"]} >= {"find", "hold", "book", "reschedule", "cancel"}


async def test_a_hold_whose_expiry_job_was_lost_is_released_by_the_sweep(clinic: Clinic) -> None:
    """The in-process queue does not survive a restart: a periodic sweep releases lapsed holds all the same."""
    slot_ref = (await _find(clinic, specialty=CARDIOLOGY, _count="1"))[0]["slot"][0]["reference"]
    slot = await clinic.slot(slot_ref.split("/")[1])
    expired = "2020-01-01T00:00:00Z"
    pending = {"resourceType": "Appointment", "id": "lost-hold", "status": "pending", "slot": [{"reference": slot_ref}],
               "participant": [{"actor": {"reference": "Patient/pat-1"}, "status": "tentative"}]}
    held = {**slot, "status": "busy-tentative", "extension": [{
        "url": "https://infirmary.example.org/fhir/StructureDefinition/slot-hold", "extension": [
            {"url": "appointment", "valueReference": {"reference": "Appointment/lost-hold"}},
            {"url": "expires", "valueInstant": expired}]}]}
    held.pop("meta")
    assert (await clinic.http.put("/Appointment/lost-hold", json=pending)).status_code == 201
    assert (await clinic.http.put(slot_ref, json=held)).status_code == 200
    assert slot_ref not in {p["slot"][0]["reference"] for p in await _find(clinic, specialty=CARDIOLOGY)}
    clinic.clock.advance(301)
    await clinic.settle()
    assert (await clinic.slot(slot_ref.split("/")[1]))["status"] == "free"
    assert (await clinic.http.get("/Appointment/lost-hold")).json()["status"] == "cancelled"

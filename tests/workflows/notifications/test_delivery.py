"""Notifications delivered for real — email to an SMTP server with STARTTLS, SMS to a local gateway endpoint,
in-app Communications — under both runners (in-process, and Celery with redis-server and a worker process)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_server.workflows.notifications._codes import OPT_OUT
from tests.workflows.notifications.conftest import Harness, phone, unique

HOUR = 3600


def at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def people(h: Harness, *, language: str = "en", opt_out: bool = False) -> dict[str, Any]:
    email, mobile, doc_email = f"p-{unique()}@patients.test", phone(), f"d-{unique()}@staff.test"
    patient: dict[str, Any] = {
        "resourceType": "Patient", "name": [{"given": ["Ana"], "family": "García"}],
        "telecom": [{"system": "email", "value": email, "rank": 1}, {"system": "sms", "value": mobile}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]},
                           "preferred": True}],
    }
    if opt_out:
        patient["extension"] = [{"url": OPT_OUT, "valueBoolean": True}]
    pat = await h.create(patient)
    doc = await h.create({"resourceType": "Practitioner", "name": [{"prefix": ["Dr."], "family": "House"}],
                          "telecom": [{"system": "email", "value": doc_email}]})
    return {"patient": pat["id"], "practitioner": doc["id"], "email": email, "mobile": mobile,
            "doc_email": doc_email}


def appointment(p: dict[str, Any], start: float, status: str = "booked") -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": status, "start": at(start), "end": at(start + 1800),
            "participant": [{"actor": {"reference": f"Patient/{p['patient']}"}, "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{p['practitioner']}"}, "status": "accepted"}]}


def kinds(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["category"][0]["coding"][0]["code"], r["medium"][0]["coding"][0]["code"]) for r in resources)


async def messages(h: Harness, recipient: str, status: str = "completed") -> list[dict[str, Any]]:
    return await h.search(f"/Communication?recipient={recipient}&status={status}&_count=100")


async def test_booking_rescheduling_and_cancelling_confirm_to_patient_and_practitioner(harness: Harness) -> None:
    h = harness
    p = await people(h)
    patient, doctor = f"Patient/{p['patient']}", f"Practitioner/{p['practitioner']}"
    start = h.clock.now() + 72 * HOUR
    appt = await h.create(appointment(p, start))

    async def sent(recipient: str, n: int) -> list[dict[str, Any]]:
        found = await messages(h, recipient)
        return found if len(found) >= n else []

    mine = await h.eventually(lambda: sent(patient, 3))
    assert kinds(mine) == [("appointment-booked", "email"), ("appointment-booked", "in-app"),
                           ("appointment-booked", "sms")]
    assert kinds(await h.eventually(lambda: sent(doctor, 2))) == [("appointment-booked", "email"),
                                                                  ("appointment-booked", "in-app")]
    assert await h.eventually(lambda: _count(h.smtp.mails_to(p["email"]) + h.smtp.mails_to(p["doc_email"]), 2))
    assert await h.eventually(lambda: _count(h.sms.to(p["mobile"]), 1))
    mails = h.smtp.mails_to(p["email"])
    assert len(mails) == 1 and mails[0].tls, "sent once, over STARTTLS"
    assert "Subject: Your appointment on" in mails[0].data and "Dr. House" in mails[0].data
    assert f"Appointment/{appt['id']}" in mails[0].data
    assert "New appointment: Ana Garc" in h.smtp.mails_to(p["doc_email"])[0].data
    (sms,) = h.sms.to(p["mobile"])
    assert sms.headers["authorization"] == "Bearer gateway-secret" and sms.path == "/send"
    assert sms.json()["reference"].startswith("Communication/") and "is confirmed" in sms.json()["body"]
    requests = await h.search(f"/CommunicationRequest?based-on=Appointment/{appt['id']}&_count=100")
    reminders = [r for r in requests if r["category"][0]["coding"][0]["code"] == "appointment-reminder"]
    assert sorted(r["occurrenceDateTime"] for r in reminders) == [at(start - 24 * HOUR), at(start - 2 * HOUR)]
    assert all(r["status"] == "active" for r in reminders)

    appt["start"], appt["end"] = at(start + 24 * HOUR), at(start + 24 * HOUR + 1800)
    assert (await h.client.put(f"/Appointment/{appt['id']}", json=appt)).status_code == 200
    moved = await h.eventually(lambda: sent(patient, 6))
    assert ("appointment-rescheduled", "in-app") in kinds(moved)
    assert await h.eventually(lambda: _count(h.smtp.mails_to(p["email"]), 2))
    assert len(h.smtp.mails_to(p["email"])) == 2 and "has moved to" in h.smtp.mails_to(p["email"])[1].data

    async def reminder_states() -> list[tuple[str, str]]:
        found = await h.search(f"/CommunicationRequest?based-on=Appointment/{appt['id']}"
                               f"&category=https://infirmary.example.org/fhir/CodeSystem/notification|"
                               f"appointment-reminder&_count=100")
        return sorted((r["occurrenceDateTime"], r["status"]) for r in found) if len(found) == 4 else []

    assert await h.eventually(reminder_states) == [
        (at(start - 24 * HOUR), "revoked"), (at(start - 2 * HOUR), "revoked"),
        (at(start), "active"), (at(start + 22 * HOUR), "active")]

    appt = (await h.client.get(f"/Appointment/{appt['id']}")).json()
    appt["status"], appt["cancelationReason"] = "cancelled", {"text": "the clinic is closed"}
    assert (await h.client.put(f"/Appointment/{appt['id']}", json=appt)).status_code == 200
    cancelled = await h.eventually(lambda: sent(doctor, 6))
    assert ("appointment-cancelled", "in-app") in kinds(cancelled)
    assert await h.eventually(lambda: _count(h.smtp.mails_to(p["doc_email"]), 3))
    assert "the clinic is closed" in h.smtp.mails_to(p["doc_email"])[-1].data
    states = await h.eventually(reminder_states)
    assert [s for _, s in states] == ["revoked"] * 4


async def test_a_reminder_fires_at_its_due_time_in_the_patients_language(harness: Harness) -> None:
    h = harness
    p = await people(h, language="es-MX")
    start = h.clock.now() + 25 * HOUR  # reminders due in 1 h (24 h before) and 23 h (2 h before)
    await h.create(appointment(p, start))
    assert await h.eventually(lambda: _count(h.smtp.mails_to(p["email"]), 1))
    assert len(h.smtp.mails_to(p["email"])) == 1  # the confirmation only
    assert "Su cita" in h.smtp.mails_to(p["email"])[0].data

    async def reminder_mails(n: int) -> bool:
        return len([m for m in h.smtp.mails_to(p["email"]) if "Recordatorio" in m.data]) >= n

    await h.advance(HOUR - 60)
    assert not await h.eventually(lambda: reminder_mails(1), within_s=1.0)  # not due yet
    await h.advance(61)
    assert await h.eventually(lambda: reminder_mails(1))
    assert not await reminder_mails(2)
    await h.advance(22 * HOUR)
    assert await h.eventually(lambda: reminder_mails(2))
    assert await h.eventually(
        lambda: _count([r for r in h.sms.to(p["mobile"]) if "le recordamos" in r.json()["body"]], 2))


async def test_an_opted_out_patient_gets_nothing(harness: Harness) -> None:
    h = harness
    p = await people(h, opt_out=True)
    start = h.clock.now() + 25 * HOUR
    await h.create(appointment(p, start))
    assert await h.eventually(lambda: messages(h, f"Practitioner/{p['practitioner']}"))  # the doctor is told
    await h.advance(24 * HOUR)  # past both reminders
    requests = await h.eventually(lambda: _all_closed(h, p["patient"]))
    assert {r["status"] for r in requests} == {"revoked"}
    assert {r["statusReason"]["coding"][0]["code"] for r in requests} == {"opted-out"}
    assert await h.search(f"/Communication?recipient=Patient/{p['patient']}") == []
    assert h.smtp.mails_to(p["email"]) == [] and h.sms.to(p["mobile"]) == []


async def _all_closed(h: Harness, patient: str) -> list[dict[str, Any]]:
    found = await h.search(f"/CommunicationRequest?recipient=Patient/{patient}&_count=100")
    return found if len(found) == 3 and all(r["status"] != "active" for r in found) else []


async def test_failed_deliveries_retry_with_back_off_and_are_visible(harness: Harness) -> None:
    h = harness
    p = await people(h)
    h.sms.fail[p["mobile"]] = 2  # the gateway answers 503 twice, then accepts
    await h.create(appointment(p, h.clock.now() + 72 * HOUR))

    async def sms_message() -> dict[str, Any] | None:
        found = await h.search(f"/Communication?recipient=Patient/{p['patient']}&medium="
                               "https://infirmary.example.org/fhir/CodeSystem/notification-channel|sms")
        return found[0] if found and found[0]["status"] == "completed" else None

    async def moved() -> dict[str, Any] | None:
        await h.advance(1)  # past the back-off (0.2 s, then 0.4 s)
        return await sms_message()

    comm = await h.eventually(moved)
    assert comm is not None and "sent" in comm and len(h.sms.to(p["mobile"])) == 1
    history = (await h.client.get(f"/Communication/{comm['id']}/_history")).json()
    reasons = [e["resource"].get("statusReason", {}).get("text", "") for e in history["entry"]
               if e["resource"]["status"] == "in-progress"]
    assert sorted(reasons) == ["attempt 1 of 3 failed: the SMS gateway answered 503; will retry",
                               "attempt 2 of 3 failed: the SMS gateway answered 503; will retry"]


async def test_a_delivery_that_keeps_failing_is_given_up_visibly(harness: Harness) -> None:
    h = harness
    p = await people(h)
    h.sms.fail[p["mobile"]] = 100
    await h.create(appointment(p, h.clock.now() + 72 * HOUR))

    async def given_up() -> dict[str, Any] | None:
        await h.advance(1)
        found = await h.search(f"/Communication?recipient=Patient/{p['patient']}&status=not-done")
        return found[0] if found else None

    comm = await h.eventually(given_up)
    assert comm is not None
    assert comm["statusReason"]["coding"][0]["code"] == "failed"
    assert comm["statusReason"]["text"] == "attempt 3 of 3 failed: the SMS gateway answered 503"
    assert await h.eventually(lambda: _count(h.smtp.mails_to(p["email"]), 1))  # email unaffected
    assert h.sms.to(p["mobile"]) == []


async def test_medication_and_follow_up_reminders(harness: Harness) -> None:
    h = harness
    p = await people(h)
    now = h.clock.now()
    day0 = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    await h.create({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{p['patient']}"}, "authoredOn": day0,
        "medicationCodeableConcept": {"text": "amoxicillin 500 mg"},
        "dosageInstruction": [{"text": "one capsule every 8 hours",
                               "timing": {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h",
                                                     "boundsPeriod": {"start": at(now + 600)}}}}]})
    await h.create({
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": f"Patient/{p['patient']}"},
        "activity": [{"detail": {"status": "scheduled", "description": "wound check at the clinic",
                                 "scheduledPeriod": {"start": at(now + 48 * HOUR)}}}]})

    async def scheduled() -> list[dict[str, Any]]:
        found = await h.search(f"/CommunicationRequest?subject=Patient/{p['patient']}&status=active&_count=100")
        return found if len(found) == 21 + 2 else []  # 7 days x 3 doses, and 24 h / 2 h before the check

    assert await h.eventually(scheduled)
    await h.advance(601)
    assert await h.eventually(lambda: _mails_with(h, p["email"], "amoxicillin 500 mg (one capsule every 8 hours)"))
    await h.advance(24 * HOUR)
    assert await h.eventually(lambda: _mails_with(h, p["email"], "wound check at the clinic"))


async def _mails_with(h: Harness, address: str, text: str) -> bool:
    return any(text in m.data for m in h.smtp.mails_to(address))


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n

"""The in-app inbox: a Communication for the patient, readable with that patient's token and nobody else's
patient token (authorization on, real tokens as in tests/auth)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.auth.conftest import FHIR, auth_settings, login_and_fetch, oauth_client, world  # noqa: F401

IN_APP = "https://infirmary.example.org/fhir/CodeSystem/notification-channel|in-app"


async def test_the_patient_reads_their_inbox_with_a_patient_token(world: Any) -> None:  # noqa: F811
    fhir = world.app.state.fhir
    resources = fhir.resources
    await resources.update("Practitioner", "prac-1", b'{"resourceType": "Practitioner", "id": "prac-1", '
                                                     b'"name": [{"family": "House"}]}')
    body = (b'{"resourceType": "Appointment", "status": "booked", "start": "2031-03-01T09:00:00Z", '
            b'"end": "2031-03-01T09:30:00Z", "participant": [{"actor": {"reference": "Patient/pat-a"}, '
            b'"status": "accepted"}, {"actor": {"reference": "Practitioner/prac-1"}, "status": "accepted"}]}')
    await resources.create("Appointment", body)
    await asyncio.wait_for(fhir.runner.idle(), 20)

    alice = await login_and_fetch(world, oauth_client(world), "alice")
    bob = await login_and_fetch(world, oauth_client(world), "bob")
    async with world.http() as http:
        mine = await http.get(f"{FHIR}/Communication", params={"recipient": "Patient/pat-a", "medium": IN_APP},
                              headers={"Authorization": f"Bearer {alice['access_token']}"})
        assert mine.status_code == 200, mine.text
        (message,) = [e["resource"] for e in mine.json()["entry"]]
        assert message["status"] == "completed" and "sent" in message
        assert message["payload"][0]["contentString"].startswith("Hello Alice Able, your appointment with House")
        theirs = await http.get(f"{FHIR}/Communication", params={"recipient": "Patient/pat-a"},
                                headers={"Authorization": f"Bearer {bob['access_token']}"})
        assert theirs.status_code in (200, 403)
        assert [e for e in theirs.json().get("entry", []) if e.get("search", {}).get("mode") == "match"] == []

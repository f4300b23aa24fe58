"""Who may book: a patient only for themselves (the Appointment must be in their compartment), staff for anyone
their role allows.  Real tokens from the server's own authorization flow; authorization on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from fhir_server.errors import Forbidden
from fhir_server.settings import AuthSettings, SchedulingSettings, Settings, StorageSettings
from tests.auth.conftest import FHIR, World, login_and_fetch, oauth_client
from tests.auth.conftest import world as world  # the fixture, with its users
from tests.workflows.scheduling.clinic import CARDIOLOGY, seed_clinic

PATIENT_SCOPE = "openid fhirUser launch/patient patient/*.cruds"
USER_SCOPE = "openid fhirUser user/*.cruds"


@pytest.fixture
def auth_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    auth=AuthSettings(enabled=True), scheduling=SchedulingSettings(horizon_days=3))


async def _token(world: World, username: str, scope: str) -> dict[str, str]:
    async with oauth_client(world, scope=scope) as client:
        token = await login_and_fetch(world, client, username)
    return {"Authorization": f"Bearer {token['access_token']}"}


def _book(slot: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": slot}},
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}}]}


async def test_patients_book_for_themselves_staff_for_anyone(world: World) -> None:
    fhir = world.app.state.fhir
    await seed_clinic(fhir.resources, [
        {"resourceType": "Patient", "id": pid, "name": [{"family": pid}]} for pid in ("pat-a", "pat-b")])
    await fhir.runner.idle()
    alice = await _token(world, "alice", PATIENT_SCOPE)
    bob = await _token(world, "bob", PATIENT_SCOPE)
    admin = await _token(world, "root", USER_SCOPE)
    async with httpx.AsyncClient(transport=world.transport, base_url=FHIR) as http:
        assert (await http.get("/Appointment/$find")).status_code == 401
        found = await http.get("/Appointment/$find", params={"specialty": CARDIOLOGY, "_count": "3"}, headers=alice)
        assert found.status_code == 200, found.text
        slots = [e["resource"]["slot"][0]["reference"] for e in found.json()["entry"]]
        assert len(slots) == 3

        # a patient cannot book for another patient: nothing is written
        other = await http.post("/Appointment/$book", json=_book(slots[0], "pat-b"), headers=alice)
        assert other.status_code in (403, 404), other.text
        assert other.json()["resourceType"] == "OperationOutcome"
        assert (await http.get(f"/{slots[0]}", headers=admin)).json()["status"] == "free"

        # ... nor slip another patient in through the appointment's participants
        proposal = found.json()["entry"][0]["resource"]
        sneaky = {**proposal, "participant": [{"actor": {"reference": "Patient/pat-b"}}, *proposal["participant"]]}
        sneak = await http.post("/Appointment/$book", headers=alice, json={
            "resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": sneaky}]})
        assert sneak.status_code in (403, 404), sneak.text
        assert (await http.get(f"/{slots[0]}", headers=admin)).json()["status"] == "free"

        own = await http.post("/Appointment/$book", json=_book(slots[0], "pat-a"), headers=alice)
        assert own.status_code == 201, own.text
        appointment = own.json()["parameter"][0]["resource"]
        assert (await http.get(f"/{slots[0]}", headers=admin)).json()["status"] == "busy"

        # a patient cannot write Slots directly, nor cancel someone else's appointment
        slot_body = (await http.get(f"/{slots[1]}", headers=alice)).json()
        assert (await http.put(f"/{slots[1]}", json={**slot_body, "status": "busy"}, headers=alice)).status_code == 403
        cancel = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "not mine"}]}
        refused = await http.post(f"/Appointment/{appointment['id']}/$cancel", json=cancel, headers=bob)
        assert refused.status_code == 404, refused.text  # a patient does not learn that it exists
        assert (await http.get(f"/{slots[0]}", headers=admin)).json()["status"] == "busy"

        # a physician may read any patient but book only for patients in their care: the scoped repository
        # refuses the Appointment, so the Slot written in the same write is not taken either
        doctor = await _token(world, "doc", USER_SCOPE)
        assert (await http.get("/Patient/pat-b", headers=doctor)).status_code == 200
        not_in_care = await http.post("/Appointment/$book", json=_book(slots[1], "pat-b"), headers=doctor)
        assert not_in_care.status_code == 403, not_in_care.text
        assert not_in_care.json()["issue"][0]["code"] == "forbidden"
        assert (await http.get(f"/{slots[1]}", headers=admin)).json()["status"] == "free"

        # staff (an administrator) book for anyone, and the patient reschedules their own appointment
        staff = await http.post("/Appointment/$book", json=_book(slots[1], "pat-b"), headers=admin)
        assert staff.status_code == 201, staff.text
        moved = await http.post(f"/Appointment/{appointment['id']}/$reschedule", headers=alice, json={
            "resourceType": "Parameters", "parameter": [{"name": "slot", "valueReference": {"reference": slots[2]}}]})
        assert moved.status_code == 200, moved.text
        assert (await http.get(f"/{slots[0]}", headers=admin)).json()["status"] == "free"
        mine = await http.post(f"/Appointment/{appointment['id']}/$cancel", json=cancel, headers=alice)
        assert mine.status_code == 200, mine.text
        assert (await http.get(f"/{slots[2]}", headers=admin)).json()["status"] == "free"


async def test_implied_ops_never_go_through_alone(world: World) -> None:
    """The scoped repository lets an implied Slot op through only with the op it follows from."""
    fhir = world.app.state.fhir
    await seed_clinic(fhir.resources, [{"resourceType": "Patient", "id": "pat-a", "name": [{"family": "A"}]}])
    await fhir.runner.idle()
    security = world.app.state.security
    alice = await _token(world, "alice", PATIENT_SCOPE)
    scoped = security.scoped(security.policy(security.authenticate(alice["Authorization"], FHIR)))
    slot_id = next(iter(await fhir.search.repo.find(
        fhir.resources.criteria("Slot", "schedule=Schedule/role-card&status=free"), limit=1)))
    slot = jsonio.loads((await fhir.repo.read("Slot", slot_id)).body)
    op = fhir.resources.plan_update("Slot", slot_id, {**slot, "status": "busy"})
    op.implied = True
    with pytest.raises(Forbidden):
        await scoped.write([op])
    op.implied = False
    with pytest.raises(Forbidden):  # nor as an ordinary write: patients read Slots, they do not write them
        await scoped.write([op])
    assert jsonio.loads((await fhir.repo.read("Slot", slot_id)).body)["status"] == "free"

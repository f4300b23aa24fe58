"""Demo mode seeds specialties, practitioners' roles with availability and their slots: ``make run`` can book."""

from __future__ import annotations

from pathlib import Path

import httpx

from fhir_server.settings import SchedulingSettings, Settings, StorageSettings


async def test_demo_store_has_bookable_slots(tmp_path: Path) -> None:
    from fhir_server.app import create_app
    from fhir_server.cli import _load_demo

    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "demo.db"),
                        scheduling=SchedulingSettings(horizon_days=14))
    assert await _load_demo(settings) > 0
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as http:
            services = (await http.get("/HealthcareService", params={"_count": "100"})).json()
            codes = {e["resource"]["specialty"][0]["coding"][0]["code"] for e in services["entry"]}
            assert {"394802001", "394579002", "394801008"} <= codes  # general medicine, cardiology, orthopaedics
            found = (await http.get("/Appointment/$find", params={"specialty": "394579002"})).json()
            assert found["entry"], "the demo cardiologist has free slots"
            proposal = found["entry"][0]["resource"]
            assert "Practitioner/prac-yang" in {p["actor"]["reference"] for p in proposal["participant"]}
            booked = await http.post("/Appointment/$book", json={"resourceType": "Parameters", "parameter": [
                {"name": "slot", "valueReference": proposal["slot"][0]},
                {"name": "patient", "valueReference": {"reference": "Patient/pat-alice"}}]})
            assert booked.status_code == 201, booked.text

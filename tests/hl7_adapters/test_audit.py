"""With authorization on, the listener writes as its system identity through the scoped repository, and every
message leaves AuditEvents naming that identity and the MLLP sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.settings import AuthSettings
from hl7_adapters.inbound import SENDER_SYSTEM
from hl7_adapters.mllp.client import MllpClient
from tests.hl7_adapters.conftest import exchange, hl7_settings, msa
from tests.hl7_adapters.test_inbound import oru


async def _audit_events(app: Any) -> list[dict[str, Any]]:
    fhir = app.state.fhir
    await fhir.security.audit_writer.flush()
    ids = await fhir.repo.find(fhir.resources.criteria("AuditEvent", "_id:missing=false"), limit=100)
    return [jsonio.loads((await fhir.repo.read("AuditEvent", i)).body) for i in ids]


async def test_audited_with_sender(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    settings = hl7_settings(tmp_path).model_copy(update={"auth": AuthSettings(enabled=True)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with MllpClient("127.0.0.1", app.state.hl7.server.port, timeout_s=10) as client:
            (ack,) = await exchange(client, oru("AUD-1"))
            assert msa(ack)[0] == "AA"
        events = await _audit_events(app)
        patient_events = [e for e in events if e.get("entity")]
        assert patient_events, events
        event = patient_events[0]
        assert event["subtype"][0]["code"] == "transaction" and event["outcome"] == "0"
        whos = [a["who"].get("identifier", {}) for a in event["agent"]]
        assert {"system": "https://infirmary.example.org/fhir/sid/client", "value": "lab-interface"} in whos
        assert {"system": SENDER_SYSTEM, "value": "LAB^LABFAC"} in whos
        sender = next(a for a in event["agent"] if a["who"].get("identifier", {}).get("system") == SENDER_SYSTEM)
        assert sender["network"]["address"] == "127.0.0.1"
        assert any(e["what"]["reference"].startswith("Patient/") for e in event["entity"])


async def test_scopes_limit_the_listener(tmp_path: Path) -> None:
    """An identity without write access to Observation cannot apply a result: AE, nothing written."""
    from fhir_server.app import create_app

    settings = hl7_settings(tmp_path, scopes="system/Patient.cruds system/Basic.cruds").model_copy(
        update={"auth": AuthSettings(enabled=True)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with MllpClient("127.0.0.1", app.state.hl7.server.port, timeout_s=10) as client:
            (ack,) = await exchange(client, oru("AUD-2"))
        assert msa(ack)[0] == "AE"
        fhir = app.state.fhir
        assert await fhir.repo.find(fhir.resources.criteria("Patient", "_id:missing=false")) == []

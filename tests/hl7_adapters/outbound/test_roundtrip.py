"""Must-show 2: a ServiceRequest created over REST leaves as an order to a test LIS (a real MLLP peer), and the
ORU that the LIS answers with becomes a DiagnosticReport linked to that ServiceRequest; the order's Task records
the ACK and is completed by the result.  Also: retries with back-off, a refusing lab, ORM^O01 in v2.3."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from fhir_server.settings import AuthSettings, LabEndpoint
from hl7_adapters.mllp.client import MllpClient
from hl7_adapters.mllp.server import MllpServer, Peer
from hl7_adapters.v2 import Message, parse_message
from hl7_adapters.v2.ack import build_ack
from tests.hl7_adapters.conftest import hl7_settings, msa

MRN_SYSTEM = "http://hospital.example.org/mrn"


class Lis:
    """A laboratory system: takes orders over MLLP, answers with an ACK, later sends the result (ORU^R01)."""

    def __init__(self, answer: str = "AA", refuse_first: int = 0) -> None:
        self.answer = answer
        self.refuse_first = refuse_first
        self.orders: list[Message] = []
        self.server = MllpServer(self.handle)

    async def handle(self, raw: bytes, peer: Peer) -> Sequence[bytes]:
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return []  # no answer: the sender times out and tries again
        order = parse_message(raw)
        self.orders.append(order)
        return [build_ack(order, self.answer, "" if self.answer == "AA" else "unknown test").encode()]

    def result_for(self, order: Message, value: str) -> bytes:
        pid, obr = order.first("PID"), order.first("OBR")
        assert pid is not None and obr is not None
        return (
            f"MSH|^~\\&|LIS|LAB|{order.sending_application}|{order.sending_facility}|20240105120000||ORU^R01|"
            f"R-{order.control_id}|P|2.5.1\r"
            f"PID|1||{pid.field(3).raw}||{pid.field(5).raw}||{pid.field(7).raw}|{pid.field(8).raw}\r"
            f"OBR|1|{obr.field(2).raw}|F-77^LAB|{obr.field(4).raw}|||20240105110000|||||||||||||||20240105115500|"
            f"|LAB|F\r"
            f"OBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-99|H|||F|||20240105115000\r"
        ).encode()


@pytest.fixture
async def lis() -> AsyncIterator[Lis]:
    lab = Lis()
    await lab.server.start("127.0.0.1", 0)
    yield lab
    await lab.server.stop(1.0)


async def _app(tmp_path: Path, lis: Lis, **lab: Any) -> Any:
    from fhir_server.app import create_app

    endpoint = LabEndpoint(host="127.0.0.1", port=lis.server.port, receiving_application="LIS",
                           receiving_facility="LAB", **lab)
    return create_app(hl7_settings(tmp_path, labs={"main": endpoint}, order_backoff_s=0.05,
                                   order_max_attempts=3, ack_timeout_s=0.5))


async def settle(app: Any, timeout_s: float = 20.0) -> None:
    """Wait until no HL7 job is queued or running (retries included: they are queued at their due time)."""
    runner = app.state.fhir.runner

    async def wait() -> None:
        while True:
            await runner.idle()
            if not [name for _, name in runner.pending() if name.startswith("hl7.")]:
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout_s)


async def _order(rest: httpx.AsyncClient, category: str = "108252007") -> tuple[str, str]:
    patient = {"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": "M-100"}],
               "name": [{"family": "Curie", "given": ["Marie"]}], "birthDate": "1967-11-07", "gender": "female"}
    response = await rest.post("Patient", json=patient)
    assert response.status_code == 201, response.text
    patient_id = response.json()["id"]
    request = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
               "category": [{"coding": [{"system": "http://snomed.info/sct", "code": category}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
               "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": "2024-01-05T10:30:00+01:00",
               "note": [{"text": "fasting | since 8h"}]}
    response = await rest.post("ServiceRequest", json=request)
    assert response.status_code == 201, response.text
    return patient_id, response.json()["id"]


async def _task(rest: httpx.AsyncClient, sr_id: str) -> dict[str, Any]:
    bundle = (await rest.get(f"Task?focus=ServiceRequest/{sr_id}")).json()
    assert len(bundle["entry"]) == 1
    task: dict[str, Any] = bundle["entry"][0]["resource"]
    return task


async def test_round_trip(tmp_path: Path, lis: Lis) -> None:
    app = await _app(tmp_path, lis, message="OML^O21", version="2.5.1")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as rest:
            patient_id, sr_id = await _order(rest)
            await settle(app)
            (order,) = lis.orders
            assert (order.message_type, order.trigger_event, order.version) == ("OML", "O21", "2.5.1")
            assert [s.name for s in order.segments] == ["MSH", "PID", "ORC", "TQ1", "OBR", "NTE"]
            pid, orc, obr = order.first("PID"), order.first("ORC"), order.first("OBR")
            assert pid is not None and orc is not None and obr is not None
            assert (pid.value(3), pid.value(3, 4, subcomponent=2), pid.value(5), pid.value(7), pid.value(8)) == \
                ("M-100", MRN_SYSTEM, "Curie", "19671107", "F")
            assert orc.value(1) == "NW" and orc.value(2) == obr.value(2) == sr_id
            assert (obr.value(4, 1), obr.value(4, 3)) == ("2345-7", "LN")
            assert order.first("NTE").value(3) == "fasting | since 8h"  # type: ignore[union-attr]
            task = await _task(rest, sr_id)
            assert task["status"] == "accepted" and task["for"]["reference"] == f"Patient/{patient_id}"
            assert {o["type"]["text"]: o.get("valueString") for o in task["output"]}["ack"] == "AA"
            sr = (await rest.get(f"ServiceRequest/{sr_id}")).json()
            assert any(i["value"] == sr_id and i["type"]["coding"][0]["code"] == "PLAC" for i in sr["identifier"])

            # the lab sends the result to our listener
            async with MllpClient("127.0.0.1", app.state.hl7.server.port, timeout_s=10) as client:
                ack = parse_message(await client.send(lis.result_for(order, "182")))
            assert msa(ack)[0] == "AA", ack.raw
            await settle(app)
            reports = (await rest.get(f"DiagnosticReport?based-on=ServiceRequest/{sr_id}")).json()["entry"]
            assert len(reports) == 1
            report = reports[0]["resource"]
            assert report["subject"]["reference"] == f"Patient/{patient_id}"  # matched by MRN, not duplicated
            assert report["status"] == "final"
            observation = (await rest.get(report["result"][0]["reference"])).json()
            assert observation["valueQuantity"]["value"] == 182
            assert (await rest.get("Patient?_summary=count")).json()["total"] == 1
            assert (await rest.get("ServiceRequest?_summary=count")).json()["total"] == 1
            task = await _task(rest, sr_id)
            assert task["status"] == "completed"
            outputs = {o["type"]["text"]: o for o in task["output"]}
            assert outputs["result"]["valueReference"]["reference"] == f"DiagnosticReport/{report['id']}"


async def test_retries_then_accepted_orm_v23(tmp_path: Path) -> None:
    lab = Lis(refuse_first=2)
    await lab.server.start("127.0.0.1", 0)
    try:
        app = await _app(tmp_path, lab, message="ORM^O01", version="2.3")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as rest:
                _, sr_id = await _order(rest)
                await settle(app)
                assert lab.orders, await _task(rest, sr_id)
                (order,) = lab.orders
                assert (order.message_type, order.structure, order.version) == ("ORM", "ORM_O01", "2.3")
                assert order.msh.value(9, 3) == ""  # v2.3 has no message structure component
                assert (await _task(rest, sr_id))["status"] == "accepted"
    finally:
        await lab.server.stop(1.0)


async def test_lab_rejects_and_unreachable_lab(tmp_path: Path) -> None:
    lab = Lis(answer="AE")
    await lab.server.start("127.0.0.1", 0)
    try:
        app = await _app(tmp_path, lab)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as rest:
                _, sr_id = await _order(rest)
                await settle(app)
                task = await _task(rest, sr_id)
                assert task["status"] == "rejected" and "unknown test" in task["statusReason"]["text"]
                await lab.server.stop(0.1)  # the lab goes away: three attempts, then the Task fails
                _, sr2 = await _order(rest)
                await settle(app)
                task = await _task(rest, sr2)
                assert task["status"] == "failed" and task["businessStatus"]["text"] == "not delivered"
                # not a lab request: nothing is sent, no Task
                _, sr3 = await _order(rest, category="409073007")
                await settle(app)
                assert "entry" not in (await rest.get(f"Task?focus=ServiceRequest/{sr3}")).json()
    finally:
        await lab.server.stop(0.1)


async def test_the_order_job_is_audited_as_the_jobs_identity(tmp_path: Path, lis: Lis) -> None:
    """Authorization on: the order job reads and writes the patient's record as ``infirmary-jobs``, audited."""
    from fhir_server.app import create_app
    from fhir_server.auth.audit import OPERATION_SYSTEM

    endpoint = LabEndpoint(host="127.0.0.1", port=lis.server.port, receiving_application="LIS",
                           receiving_facility="LAB")
    settings = hl7_settings(tmp_path, labs={"main": endpoint}).model_copy(update={"auth": AuthSettings(enabled=True)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        fhir = app.state.fhir
        patient = await fhir.resources.create("Patient", jsonio.dumps({"resourceType": "Patient",
                                                                         "name": [{"family": "Curie"}]}))
        await fhir.resources.create("ServiceRequest", jsonio.dumps({
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{patient.id}"}}))
        await settle(app)
        assert len(lis.orders) == 1
        await fhir.security.audit_writer.flush()
        ids = await fhir.repo.find(fhir.resources.criteria("AuditEvent", f"patient=Patient/{patient.id}"), 10)
        (event,) = [jsonio.loads((await fhir.repo.read("AuditEvent", i)).body) for i in ids]
        assert {"system": OPERATION_SYSTEM, "code": "job:hl7.send_order"} in event["subtype"]
        assert event["agent"][0]["who"]["identifier"]["value"] == "infirmary-jobs" and event["outcome"] == "0"
        assert {e["what"]["reference"].split("/")[0] for e in event["entity"]} == {"Patient", "ServiceRequest",
                                                                                  "Task"}

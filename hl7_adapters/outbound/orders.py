"""Sending lab orders: the after-write hooks and the job with retries and back-off.

* A **ServiceRequest created** (by the API or a workflow, not by an inbound HL7 message) that is a laboratory
  request (``category`` SNOMED 108252007 / v2-0074 ``LAB`` / text "laboratory"), active, and that has a lab
  (``performer`` naming a configured lab by display or identifier value, else ``FHIR_HL7__DEFAULT_LAB``, else the
  only configured lab) queues :meth:`OutboundOrders.send_order` with its id.
* The job creates the order's Task, gives the ServiceRequest a placer order number if it has none (identifier of
  type PLAC, system from ``FHIR_HL7__APPLICATION``: the ORU that comes back carries it in OBR-2 and the inbound
  mapping links the result through it), builds ORM^O01 or OML^O21 (``builder``), and sends it over MLLP. No
  answer or a refused connection is retried with exponential back-off (``FHIR_HL7__ORDER_BACKOFF_S`` doubling up
  to ``…_MAX_S``, ``FHIR_HL7__ORDER_MAX_ATTEMPTS`` in all; AR/CR are retried too, AE is final). The Task ends
  ``accepted`` (AA/CA), ``rejected`` (AE, or AR after the last try) or ``failed`` (never answered).
* A **DiagnosticReport written** with ``basedOn`` a ServiceRequest whose order Task is open completes that Task
  (``in-progress`` for preliminary results) with the report as output.

Task functions take ids only (DESIGN.md: the same functions run under another job runner).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.jobs.context import job_services
from fhir_server.settings import Hl7Settings, LabEndpoint
from fhir_server.storage.base import WriteOutcome
from hl7_adapters._flags import INBOUND
from hl7_adapters.mllp.client import MllpClient, MllpError
from hl7_adapters.outbound import _task
from hl7_adapters.outbound.builder import (
    AUTHORITY_BASE,
    OrderBuildError,
    build_order,
    placer_identifier,
    validate_structure,
)
from hl7_adapters.v2.ack import new_control_id
from hl7_adapters.v2.parser import ParseError, parse_message

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext, Services

log = logging.getLogger("hl7_adapters.outbound")

_LAB_CODES = {("http://snomed.info/sct", "108252007"), ("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")}
_FINAL = ("final", "amended", "corrected", "appended")


def is_lab_request(sr: dict[str, Any]) -> bool:
    for concept in sr.get("category", []):
        if "lab" in str(concept.get("text", "")).lower():
            return True
        for coding in concept.get("coding", []):
            if (coding.get("system"), coding.get("code")) in _LAB_CODES or coding.get("code") == "laboratory":
                return True
    return False


class OutboundOrders:
    def __init__(self, fhir: FhirContext, settings: Hl7Settings) -> None:
        self.fhir = fhir
        self.settings = settings
        self._stopping = False

    def install(self) -> None:
        self.fhir.resources.after_write.append(self.after_write)

    async def stop(self) -> None:
        self._stopping = True

    # -- hooks -----------------------------------------------------------------------------------------------

    def lab_for(self, sr: dict[str, Any]) -> tuple[str, LabEndpoint] | None:
        labs = self.settings.labs
        for performer in sr.get("performer", []):
            names = [performer.get("display"), (performer.get("identifier") or {}).get("value")]
            for name in names:
                if name in labs:
                    return str(name), labs[str(name)]
        if self.settings.default_lab in labs:
            name = str(self.settings.default_lab)
            return name, labs[name]
        if len(labs) == 1:
            return next(iter(labs.items()))
        return None

    async def after_write(self, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        if resource is None or not self.settings.labs or not self.settings.send_orders or self._stopping:
            return
        if outcome.resource_type == "ServiceRequest" and outcome.created and not INBOUND.get():
            if resource.get("status") == "active" and is_lab_request(resource) and self.lab_for(resource):
                self.fhir.runner.submit(f"hl7 order {outcome.id}", self.send_order, outcome.id)
        elif outcome.resource_type == "DiagnosticReport" and any(
                str(b.get("reference", "")).startswith("ServiceRequest/") for b in resource.get("basedOn", [])):
            self.fhir.runner.submit(f"hl7 result {outcome.id}", self.complete_orders, outcome.id)

    # -- the order job ---------------------------------------------------------------------------------------

    async def send_order(self, sr_id: str) -> str:
        """Send one ServiceRequest to its lab; returns the final Task status.  Runs as the jobs identity, audited
        as ``POST $job/hl7.send_order`` (:func:`fhir_server.jobs.context.job_services`)."""
        async with job_services(self.fhir, "hl7.send_order") as svc:
            return await self._send_order(svc, sr_id)

    async def _send_order(self, svc: Services, sr_id: str) -> str:
        resources = svc.resources
        sr = jsonio.loads((await resources.read("ServiceRequest", sr_id)).body or b"{}")
        chosen = self.lab_for(sr)
        if chosen is None:
            return "no-lab"
        lab_name, lab = chosen
        task_id, task = await self._task(svc, sr_id, sr, lab_name)
        try:
            placer = await self._placer(svc, sr_id, sr)
            patient = await self._patient(svc, sr)
            control_id = new_control_id()
            er7 = build_order(sr, patient, lab, application=self.settings.application,
                              facility=self.settings.facility, control_id=control_id, placer=placer)
            await asyncio.to_thread(validate_structure, er7)
        except (OrderBuildError, FhirError) as exc:
            _task.set_status(task, "failed", "not sent", str(exc))
            await self._save(svc, task_id, task)
            return "failed"
        _task.add_output(task, "message-control-id", valueString=control_id)
        status = await self._deliver(svc, er7.encode(), lab, task_id, task)
        return status

    async def _deliver(self, svc: Services, message: bytes, lab: LabEndpoint, task_id: str, task: dict[str, Any]) -> str:
        delay = self.settings.order_backoff_s
        last = ""
        for attempt in range(1, self.settings.order_max_attempts + 1):
            code, text = await self._attempt(message, lab)
            if code in ("AA", "CA"):
                _task.set_status(task, "accepted", f"accepted by the lab ({code})")
                _task.add_output(task, "ack", valueString=f"{code} {text}".strip())
                await self._save(svc, task_id, task)
                return "accepted"
            if code == "AE":
                _task.set_status(task, "rejected", "rejected by the lab (AE)", text or "application error")
                _task.add_output(task, "ack", valueString=f"AE {text}".strip())
                await self._save(svc, task_id, task)
                return "rejected"
            last = f"{code} {text}".strip() if code else text
            if attempt == self.settings.order_max_attempts or self._stopping:
                break
            if attempt == 1:
                _task.set_status(task, "requested", "retrying", last)
                await self._save(svc, task_id, task)
            log.warning("HL7 order: attempt %d to %s:%d failed (%s); retrying in %.1f s", attempt, lab.host,
                        lab.port, code or "no answer", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.order_backoff_max_s)
        rejected = last.startswith(("AR", "CR"))
        _task.set_status(task, "rejected" if rejected else "failed",
                         "rejected by the lab" if rejected else "not delivered", last)
        await self._save(svc, task_id, task)
        return "rejected" if rejected else "failed"

    async def _attempt(self, message: bytes, lab: LabEndpoint) -> tuple[str, str]:
        """One delivery: (MSA-1, MSA-3) of the answer, or ("", why) when there was none."""
        context = None
        if lab.tls:
            context = ssl.create_default_context(cafile=str(lab.tls_ca) if lab.tls_ca else None)
        try:
            async with MllpClient(lab.host, lab.port, timeout_s=self.settings.ack_timeout_s,
                                  ssl_context=context) as client:
                answer = await client.send(message)
        except (MllpError, OSError, TimeoutError) as exc:
            return "", f"no answer: {type(exc).__name__}"
        try:
            ack = parse_message(answer)
        except ParseError as exc:
            return "", f"unreadable answer: {exc.reason}"
        msa = ack.first("MSA")
        if msa is None:
            return "", "the answer has no MSA segment"
        return msa.value(1), msa.value(3)

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _task(self, svc: Services, sr_id: str, sr: dict[str, Any],
                    lab_name: str) -> tuple[str, dict[str, Any]]:
        existing = await self._find_task(svc, sr_id)
        if existing is not None:
            return existing
        task = _task.order_task(sr_id, sr, lab_name)
        outcome = await svc.resources.create("Task", jsonio.dumps(task))
        assert outcome.id is not None and outcome.version is not None and outcome.version.body is not None
        return outcome.id, jsonio.loads(outcome.version.body)

    async def _find_task(self, svc: Services, sr_id: str) -> tuple[str, dict[str, Any]] | None:
        return await svc.resources.find_one("Task", _task.task_query(sr_id))

    async def _save(self, svc: Services, task_id: str, task: dict[str, Any]) -> None:
        task.pop("meta", None)
        await svc.resources.update("Task", task_id, jsonio.dumps(task))

    async def _placer(self, svc: Services, sr_id: str, sr: dict[str, Any]) -> dict[str, Any]:
        placer = placer_identifier(sr)
        if placer is not None:
            return placer
        placer = {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
            "system": AUTHORITY_BASE + quote(self.settings.application, safe=""),
            "value": sr_id,
        }
        sr["identifier"] = [*sr.get("identifier", []), placer]
        version = sr.get("meta", {}).get("versionId")
        sr.pop("meta", None)
        await svc.resources.update("ServiceRequest", sr_id, jsonio.dumps(sr),
                                   if_match=f'W/"{version}"' if version else None)
        return placer

    async def _patient(self, svc: Services, sr: dict[str, Any]) -> dict[str, Any] | None:
        ref = str((sr.get("subject") or {}).get("reference", ""))
        if not ref.startswith("Patient/"):
            return None
        stored = await svc.repo.read("Patient", ref.split("/", 1)[1])
        return jsonio.loads(stored.body) if stored is not None and stored.body else None

    # -- the result job ----------------------------------------------------------------------------------------

    async def complete_orders(self, report_id: str) -> int:
        """Complete the open order Tasks of the ServiceRequests a DiagnosticReport is based on; returns how many.
        Runs as the jobs identity, audited as ``POST $job/hl7.complete_orders``."""
        async with job_services(self.fhir, "hl7.complete_orders") as svc:
            return await self._complete_orders(svc, report_id)

    async def _complete_orders(self, svc: Services, report_id: str) -> int:
        stored = await svc.repo.read("DiagnosticReport", report_id)
        if stored is None or stored.body is None:
            return 0
        report = jsonio.loads(stored.body)
        final = report.get("status") in _FINAL
        done = 0
        for based_on in report.get("basedOn", []):
            ref = str(based_on.get("reference", ""))
            if not ref.startswith("ServiceRequest/"):
                continue
            found = await self._find_task(svc, ref.split("/", 1)[1])
            if found is None or found[1].get("status") in ("completed", "cancelled", "entered-in-error"):
                continue
            task_id, task = found
            _task.set_status(task, "completed" if final else "in-progress",
                             "result received" if final else "preliminary result received")
            _task.add_output(task, "result", valueReference={"reference": f"DiagnosticReport/{report_id}"})
            await self._save(svc, task_id, task)
            done += 1
        return done

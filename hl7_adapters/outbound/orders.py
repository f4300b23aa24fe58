"""Sending lab orders, one delivery attempt per job run, and completing them when the result comes back.

* A **ServiceRequest created** (by the API or a workflow, not by an inbound HL7 message) that is a laboratory
  request (``category`` SNOMED 108252007 / v2-0074 ``LAB`` / text "laboratory"), active, and that has a lab
  (``performer`` naming a configured lab by display or identifier value, else ``FHIR_HL7__DEFAULT_LAB``, else the
  only configured lab) is queued as task ``hl7.send_order(service_request_id)`` (``tasks``).
* :func:`send_order` (one run = one attempt) creates the order's Task on the first run, gives the ServiceRequest
  a placer order number if it has none (identifier of type PLAC, system from ``FHIR_HL7__APPLICATION``: the ORU
  that comes back carries it in OBR-2 and the inbound mapping links the result through it), builds ORM^O01 or
  OML^O21 (``builder``) and sends it over MLLP.  AA/CA: the Task is ``accepted``; AE: ``rejected``.  No answer,
  a refused connection, AR or CR: the attempt count and the time of the next attempt are recorded on the Task
  (businessStatus "retrying"; ``FHIR_HL7__ORDER_BACKOFF_S`` doubling up to ``…_MAX_S``) and the job asks its
  runner to run it again then (:class:`~fhir_server.jobs.RetryAt`, same job key); after
  ``FHIR_HL7__ORDER_MAX_ATTEMPTS`` the Task is ``rejected`` (AR/CR) or ``failed`` (never answered).  Because the
  state is on the Task, ``hl7.orders_sweep`` resumes an order whose retry was lost with a stopped process.
* :func:`complete_orders`: a **DiagnosticReport** with ``basedOn`` a ServiceRequest whose order Task is open
  completes that Task (``in-progress`` for preliminary results) with the report as output.

Everything runs through the job context's services: as the jobs identity, scoped and audited
(docs/jobs.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.jobs.registry import RetryAt, backoff_delay
from fhir_server.settings import Hl7Settings, LabEndpoint
from fhir_server.storage._meta import format_instant
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
    from fhir_server.api.context import Services
    from fhir_server.jobs.context import JobContext

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


def lab_for(settings: Hl7Settings, sr: dict[str, Any]) -> tuple[str, LabEndpoint] | None:
    labs = settings.labs
    for performer in sr.get("performer", []):
        for name in (performer.get("display"), (performer.get("identifier") or {}).get("value")):
            if name in labs:
                return str(name), labs[str(name)]
    if settings.default_lab in labs:
        name = str(settings.default_lab)
        return name, labs[name]
    if len(labs) == 1:
        return next(iter(labs.items()))
    return None


def epoch_of(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


# -- the order job ---------------------------------------------------------------------------------------------

async def send_order(ctx: JobContext, sr_id: str) -> str:
    """One delivery attempt of a ServiceRequest's order; returns the Task's business status after it (raises
    RetryAt when another attempt is to follow).  A Task no longer pending is left alone (a duplicate run)."""
    svc, settings = ctx.services, ctx.settings.hl7
    stored = await svc.repo.read("ServiceRequest", sr_id)
    if stored is None or stored.body is None:
        return "no-request"
    sr = jsonio.loads(stored.body)
    found = await _find_task(svc, sr_id)
    if found is not None and not _task.is_pending(found[1]):
        return str((found[1].get("businessStatus") or {}).get("text", ""))
    chosen = lab_for(settings, sr)
    if chosen is None:
        if found is not None:
            await _finish(svc, found, "failed", "not sent", "no laboratory is configured for this order")
        return "no-lab"
    lab_name, lab = chosen
    task_id, task = found if found is not None else await _create_task(svc, sr_id, sr, lab_name)
    try:
        message = await _message(svc, settings, sr_id, sr, lab, task)
    except (OrderBuildError, FhirError) as exc:
        return await _finish(svc, (task_id, task), "failed", "not sent", str(exc))
    return await _deliver(ctx, message, lab, task_id, task)


async def _message(svc: Services, settings: Hl7Settings, sr_id: str, sr: dict[str, Any], lab: LabEndpoint,
                   task: dict[str, Any]) -> bytes:
    """The order message; a retry sends the same message control id (the lab recognises a repeat)."""
    placer = await _placer(svc, settings, sr_id, sr)
    patient = await _patient(svc, sr)
    known = _task.output(task, "message-control-id")
    control_id = str(known.get("valueString")) if known and known.get("valueString") else new_control_id()
    er7 = build_order(sr, patient, lab, application=settings.application, facility=settings.facility,
                      control_id=control_id, placer=placer)
    await asyncio.to_thread(validate_structure, er7)
    _task.add_output(task, "message-control-id", valueString=control_id)
    return er7.encode()


async def _deliver(ctx: JobContext, message: bytes, lab: LabEndpoint, task_id: str, task: dict[str, Any]) -> str:
    settings, svc = ctx.settings.hl7, ctx.services
    code, text = await attempt(settings, message, lab)
    made = _task.attempts(task) + 1
    _task.add_output(task, "attempts", valueUnsignedInt=made)
    if code in ("AA", "CA"):
        _task.add_output(task, "ack", valueString=f"{code} {text}".strip())
        return await _finish(svc, (task_id, task), "accepted", f"accepted by the lab ({code})")
    if code == "AE":
        _task.add_output(task, "ack", valueString=f"AE {text}".strip())
        return await _finish(svc, (task_id, task), "rejected", "rejected by the lab (AE)",
                             text or "application error")
    last = f"{code} {text}".strip() if code else text
    if made >= settings.order_max_attempts:
        rejected = code in ("AR", "CR")
        return await _finish(svc, (task_id, task), "rejected" if rejected else "failed",
                             "rejected by the lab" if rejected else "not delivered", last)
    delay = backoff_delay(made, settings.order_backoff_s, settings.order_backoff_max_s)
    due = ctx.now() + delay
    _task.set_status(task, "requested", "retrying", last)
    _task.set_next_attempt(task, format_instant(due))
    await _save(svc, task_id, task)
    log.warning("HL7 order: attempt %d to %s:%d failed (%s); retrying in %.1f s", made, lab.host, lab.port,
                code or "no answer", delay)
    raise RetryAt(due, f"attempt {made} not accepted")


async def attempt(settings: Hl7Settings, message: bytes, lab: LabEndpoint) -> tuple[str, str]:
    """One delivery: (MSA-1, MSA-3) of the answer, or ("", why) when there was none."""
    context = None
    if lab.tls:
        context = ssl.create_default_context(cafile=str(lab.tls_ca) if lab.tls_ca else None)
    try:
        async with MllpClient(lab.host, lab.port, timeout_s=settings.ack_timeout_s, ssl_context=context) as client:
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


# -- helpers -----------------------------------------------------------------------------------------------------

async def _create_task(svc: Services, sr_id: str, sr: dict[str, Any], lab_name: str) -> tuple[str, dict[str, Any]]:
    outcome = await svc.resources.create("Task", jsonio.dumps(_task.order_task(sr_id, sr, lab_name)))
    assert outcome.id is not None and outcome.version is not None and outcome.version.body is not None
    return outcome.id, jsonio.loads(outcome.version.body)


async def _find_task(svc: Services, sr_id: str) -> tuple[str, dict[str, Any]] | None:
    return await svc.resources.find_one("Task", _task.task_query(sr_id))


async def _finish(svc: Services, found: tuple[str, dict[str, Any]], status: str, business: str,
                  reason: str | None = None) -> str:
    task_id, task = found
    _task.set_status(task, status, business, reason)
    _task.set_next_attempt(task, None)
    await _save(svc, task_id, task)
    return status


async def _save(svc: Services, task_id: str, task: dict[str, Any]) -> None:
    task.pop("meta", None)
    await svc.resources.update("Task", task_id, jsonio.dumps(task))


async def _placer(svc: Services, settings: Hl7Settings, sr_id: str, sr: dict[str, Any]) -> dict[str, Any]:
    placer = placer_identifier(sr)
    if placer is not None:
        return placer
    placer = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
        "system": AUTHORITY_BASE + quote(settings.application, safe=""),
        "value": sr_id,
    }
    sr["identifier"] = [*sr.get("identifier", []), placer]
    version = sr.get("meta", {}).get("versionId")
    sr.pop("meta", None)
    await svc.resources.update("ServiceRequest", sr_id, jsonio.dumps(sr),
                               if_match=f'W/"{version}"' if version else None)
    return placer


async def _patient(svc: Services, sr: dict[str, Any]) -> dict[str, Any] | None:
    ref = str((sr.get("subject") or {}).get("reference", ""))
    if not ref.startswith("Patient/"):
        return None
    stored = await svc.repo.read("Patient", ref.split("/", 1)[1])
    return jsonio.loads(stored.body) if stored is not None and stored.body else None


# -- the result job ----------------------------------------------------------------------------------------------

async def complete_orders(ctx: JobContext, report_id: str) -> int:
    """Complete the open order Tasks of the ServiceRequests a DiagnosticReport is based on; returns how many."""
    svc = ctx.services
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
        found = await _find_task(svc, ref.split("/", 1)[1])
        if found is None or found[1].get("status") in ("completed", "cancelled", "entered-in-error"):
            continue
        task_id, task = found
        _task.set_status(task, "completed" if final else "in-progress",
                         "result received" if final else "preliminary result received")
        _task.set_next_attempt(task, None)
        _task.add_output(task, "result", valueReference={"reference": f"DiagnosticReport/{report_id}"})
        await _save(svc, task_id, task)
        done += 1
    return done

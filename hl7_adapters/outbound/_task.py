"""The Task that follows one outbound lab order: created when the order is queued, updated with the lab's ACK,
completed when the result arrives.

``Task.focus`` is the ServiceRequest, ``code`` is ``task-code#fulfill``, ``owner.display`` the lab's name;
``businessStatus.text`` says where delivery stands ("queued", "retrying", then the outcome); ``output`` keeps
the message control id, the number of delivery ``attempts`` made (``valueUnsignedInt``), the lab's ACK (MSA code
and text) and, at the end, the DiagnosticReport; while a retry is pending, ``input`` ``next-attempt``
(``valueDateTime``) says when it is due: the durable state the periodic sweep resumes from after a restart.
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server.storage._meta import format_instant

TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
DESCRIPTION = "Send the laboratory order to the lab over HL7 v2 (MLLP) and follow it to its result"
PENDING = ("queued", "retrying")  # businessStatus of a Task still to be sent


def order_task(sr_id: str, sr: dict[str, Any], lab_name: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill", "display": "Fulfill the focal request"}]},
        "description": DESCRIPTION,
        "focus": {"reference": f"ServiceRequest/{sr_id}"},
        "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
        "authoredOn": format_instant(time.time()),
        "lastModified": format_instant(time.time()),
        "owner": {"display": lab_name},
        "businessStatus": {"text": "queued"},
    }
    if isinstance(sr.get("subject"), dict) and sr["subject"].get("reference"):
        task["for"] = {"reference": sr["subject"]["reference"]}
    return task


def task_query(sr_id: str) -> str:
    return f"focus=ServiceRequest/{sr_id}&code={TASK_CODE_SYSTEM}|fulfill"


def set_status(task: dict[str, Any], status: str, business: str, reason: str | None = None) -> None:
    task["status"] = status
    task["businessStatus"] = {"text": business}
    task["lastModified"] = format_instant(time.time())
    if reason:
        task["statusReason"] = {"text": reason[:1000]}
    else:
        task.pop("statusReason", None)


def add_output(task: dict[str, Any], kind: str, **value: Any) -> None:
    outputs = [o for o in task.get("output", []) if o.get("type", {}).get("text") != kind]
    outputs.append({"type": {"text": kind}, **value})
    task["output"] = outputs


def output(task: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((o for o in task.get("output", []) if o.get("type", {}).get("text") == kind), None)


def attempts(task: dict[str, Any]) -> int:
    found = output(task, "attempts")
    return int(found.get("valueUnsignedInt", 0)) if found else 0


def next_attempt(task: dict[str, Any]) -> str | None:
    """When the next delivery attempt is due (a FHIR instant), or None."""
    for given in task.get("input", []):
        if given.get("type", {}).get("text") == "next-attempt":
            return str(given.get("valueDateTime", "")) or None
    return None


def set_next_attempt(task: dict[str, Any], when: str | None) -> None:
    inputs = [i for i in task.get("input", []) if i.get("type", {}).get("text") != "next-attempt"]
    if when is not None:
        inputs.append({"type": {"text": "next-attempt"}, "valueDateTime": when})
    if inputs:
        task["input"] = inputs
    else:
        task.pop("input", None)


def is_pending(task: dict[str, Any]) -> bool:
    """Still to be sent: created by the order job, ``requested``, businessStatus "queued" or "retrying"."""
    return (task.get("status") == "requested" and task.get("description") == DESCRIPTION
            and (task.get("businessStatus") or {}).get("text") in PENDING)

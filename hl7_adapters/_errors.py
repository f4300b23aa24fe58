"""Turning what went wrong into ERR segments: parse errors, mapping errors, and FHIR errors of the transaction.

A ``FhirError`` from the transaction names a Bundle entry (``Bundle.entry[3].resource.valueQuantity``); the
entry's resource type tells the segment that produced it (Observation → OBX, …) and the entries of that type
before it its occurrence number, so the ERR segment points at the segment (not the field: a FHIR element does
not map back to one field reliably).
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import FhirError
from hl7_adapters.v2 import ack
from hl7_adapters.v2.ack import ErrorDetail, segment_sequence
from hl7_adapters.v2.message import Message
from hl7_adapters.v2.parser import ParseError

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2")

_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")
_SEGMENT_OF = {
    "Patient": "PID", "Encounter": "PV1", "Coverage": "IN1", "AllergyIntolerance": "AL1", "Condition": "DG1",
    "RelatedPerson": "NK1", "Observation": "OBX", "DiagnosticReport": "OBR", "ServiceRequest": "OBR",
    "Specimen": "SPM", "Appointment": "SCH", "ChargeItem": "FT1", "MedicationRequest": "RXE",
    "Immunization": "RXA", "Practitioner": "PV1", "Organization": "MSH", "Location": "PV1",
}


def parse_error_detail(exc: ParseError) -> ErrorDetail:
    code = ack.REQUIRED_FIELD_MISSING if "required" in exc.reason else ack.DATA_TYPE_ERROR
    if exc.segment and exc.segment != "MSH":
        code = ack.SEGMENT_SEQUENCE_ERROR
    return ErrorDetail(code, exc.reason, exc.segment, 1 if exc.segment else None, exc.field)


def header_problem(msg: Message) -> ErrorDetail | None:
    """What makes a parsed message unacceptable before mapping (answered with AR), or None."""
    if not msg.control_id.strip():
        return ErrorDetail(ack.REQUIRED_FIELD_MISSING, "MSH-10 (message control id) is required", "MSH", 1, 10)
    if not msg.version:
        return ErrorDetail(ack.REQUIRED_FIELD_MISSING, "MSH-12 (version id) is required", "MSH", 1, 12)
    if msg.version not in SUPPORTED_VERSIONS:
        return ErrorDetail(ack.UNSUPPORTED_VERSION_ID,
                           f"HL7 version {msg.version} is not supported (2.3 to 2.8 are)", "MSH", 1, 12)
    if msg.processing_id[:1] not in ("P", "T", "D", ""):
        return ErrorDetail(ack.UNSUPPORTED_PROCESSING_ID,
                           f"processing id {msg.processing_id!r} is not supported (P, T, D are)", "MSH", 1, 11)
    if not msg.trigger_event and msg.message_type != "ACK":
        return ErrorDetail(ack.REQUIRED_FIELD_MISSING, "MSH-9.2 (trigger event) is required", "MSH", 1, 9)
    return None


def mapping_error_detail(msg: Message, exc: Any) -> ErrorDetail:
    """A ``MappingError`` (segment, segment_index, field, component, reason) → ERR."""
    sequence = segment_sequence(msg, exc.segment_index) if exc.segment_index >= 0 else None
    code = ack.REQUIRED_FIELD_MISSING if any(w in exc.reason for w in ("required", "missing", "empty")) else \
        ack.DATA_TYPE_ERROR if exc.field else ack.SEGMENT_SEQUENCE_ERROR
    return ErrorDetail(code, f"{exc.segment}{'-' + str(exc.field) if exc.field else ''}: {exc.reason}",
                       exc.segment, sequence, exc.field, exc.component)


def fhir_error_detail(msg: Message, bundle: dict[str, Any], exc: FhirError) -> ErrorDetail:
    """A FHIR error of the message's transaction → ERR naming the segment that produced the failing entry."""
    expressions = [e for issue in exc.issues for e in issue.expression]
    text = exc.diagnostics
    for expression in expressions:
        found = _ENTRY.search(expression)
        if found is None:
            continue
        entries = bundle.get("entry", [])
        index = int(found.group(1))
        if index >= len(entries):
            break
        url = str(entries[index].get("request", {}).get("url", ""))
        rtype = url.split("?")[0].split("/")[0] or str((entries[index].get("resource") or {}).get("resourceType"))
        segment = _SEGMENT_OF.get(rtype)
        if segment is None or msg.first(segment) is None:
            break
        same = sum(1 for e in entries[:index]
                   if str(e.get("request", {}).get("url", "")).split("?")[0].split("/")[0] == rtype)
        count = len(msg.all(segment))
        sequence = same + 1 if same < count else 1
        code = ack.REQUIRED_FIELD_MISSING if exc.code == "required" else \
            ack.UNKNOWN_KEY_IDENTIFIER if exc.status in (404, 412) else ack.DATA_TYPE_ERROR
        return ErrorDetail(code, f"{segment}: {text}", segment, sequence)
    code = ack.UNKNOWN_KEY_IDENTIFIER if exc.status in (404, 412) else ack.APPLICATION_INTERNAL_ERROR \
        if exc.status >= 500 else ack.DATA_TYPE_ERROR
    return ErrorDetail(code, text)

"""Results (ORU^R01, OUL^R22): each order group → DiagnosticReport with its Observations (OBX) and Specimens
(SPM), linked to the ordering ServiceRequest by placer/filler number.

The ServiceRequest is matched by order number (see ``_orders``); when the order is unknown here (an unsolicited
result), a minimal one is created from the OBR so the report still has its ``basedOn``.  The report is keyed by
the filler number (else the placer number), each observation by report + OBX-3 + OBX-4 (+ the repeat count), so a
corrected result re-sent later replaces the preliminary one.
"""

from __future__ import annotations

import base64
from typing import Any

from hl7_adapters.mappings._bundle import Builder, ref
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._orders import (
    OrderGroup,
    OrderNumbers,
    notes_after,
    order_groups,
    order_numbers,
    require_orders,
    specimen,
)
from hl7_adapters.mappings._patient import PatientRef, patient_entry
from hl7_adapters.mappings._types import (
    JSON,
    codeable,
    codeable_field,
    decimal,
    interpretation,
    parse_ts,
    present,
    quantity,
    reference_range,
    ts,
    unit,
    v2_code,
)
from hl7_adapters.v2.message import Message, Repetition, Segment

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_REPORT_STATUS = {"O": "registered", "I": "registered", "S": "partial", "A": "partial", "P": "preliminary",
                  "R": "preliminary", "N": "partial", "C": "corrected", "M": "amended", "F": "final",
                  "X": "cancelled", "D": "entered-in-error", "W": "entered-in-error"}
_OBS_STATUS = {"F": "final", "C": "corrected", "A": "amended", "P": "preliminary", "R": "preliminary",
               "S": "preliminary", "I": "registered", "O": "registered", "X": "cancelled", "N": "cancelled",
               "D": "entered-in-error", "W": "entered-in-error", "U": "final"}
_ATTACHMENT_TYPES = ("ED", "RP")
_MIME = {"JPEG": "image/jpeg", "JPG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "TIFF": "image/tiff",
         "PDF": "application/pdf", "HTML": "text/html", "XML": "application/xml", "RTF": "application/rtf",
         "TEXT": "text/plain", "OCTET-STREAM": "application/octet-stream"}


def results_bundle(msg: Message, *, specimen_first: bool) -> dict[str, Any]:
    b = Builder(msg)
    patient = patient_entry(b, update=False)
    body = [s for s in msg.segments if s.name not in ("MSH", "SFT", "PID", "PD1", "NK1", "PV1", "PV2")]
    groups, before = order_groups(body, specimen_first=specimen_first)
    require_orders(groups, b)
    seen: dict[str, int] = {}
    for obx in (s for s in before if s.name == "OBX"):  # observations about the patient, outside any order
        if present(obx.value(2)).upper() not in _ATTACHMENT_TYPES:
            key = f"patient|{obx.value(3, 1)}|{obx.value(3, 3)}|{obx.value(4)}"
            seen[key] = seen.get(key, 0) + 1
            observation(obx, before, b, patient, f"{key}|{seen[key]}", None, None)
    for number, group in enumerate(groups, 1):
        report(group, number, b, patient)
    return b.bundle()


def report(group: OrderGroup, number: int, b: Builder, patient: PatientRef) -> None:
    obr = group.obr
    if obr is None:
        seg = group.anchor
        raise MappingError("OBR", -1, None, f"the order at {seg.name} segment {seg.index + 1} has no OBR: a result "
                           "needs the observation request")
    code = codeable_field(obr, 4)
    if code is None:
        raise MappingError("OBR", obr.index, 4, "the universal service identifier (test code) is required", 1)
    numbers = order_numbers(group, b.receiver_system, b.application_system)
    request_url = _ordering_request(group, b, patient, numbers, code)
    report_id = numbers.filler or numbers.placer or Builder.derived("DiagnosticReport", b.msg.sending_application,
                                                                  b.msg.control_id, str(number))
    scope = f"{report_id.get('system', '')}|{report_id['value']}"
    specimens = [specimen(s, b, patient, request_url, scope) for s in group.specimens]
    observations: list[str] = []
    attachments: list[JSON] = []
    seen: dict[str, int] = {}
    for obx in (s for s in group.segments if s.name == "OBX"):
        if present(obx.value(2)).upper() in _ATTACHMENT_TYPES:
            attachment = _attachment(obx)
            if attachment:
                attachments.append(attachment)
            continue
        key = f"{obx.value(3, 1)}|{obx.value(3, 3)}|{obx.value(4)}"
        seen[key] = seen.get(key, 0) + 1
        observations.append(observation(obx, group.segments, b, patient, f"{scope}|{key}|{seen[key]}",
                                        request_url, specimens[0] if specimens else None, obr))
    out: JSON = {"resourceType": "DiagnosticReport", "identifier": [report_id]}
    if request_url:
        out["basedOn"] = [ref(request_url)]
    out["status"] = _report_status(obr, group)
    section = present(obr.value(24))
    out["category"] = [{"coding": [v2_code("0074", section)]}] if section else \
        [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                      "display": "Laboratory"}]}]
    out["code"] = code
    out["subject"] = patient.reference()
    _effective(obr, b, out)
    issued = ts(obr, 22, b.offset, kind="instant")
    if issued:
        out["issued"] = issued
    if specimens:
        out["specimen"] = [ref(u) for u in specimens]
    if observations:
        out["result"] = [ref(u) for u in observations]
    if attachments:
        out["presentedForm"] = attachments
    b.put(out, report_id, f"DiagnosticReport|{scope}")


def _ordering_request(group: OrderGroup, b: Builder, patient: PatientRef, numbers: OrderNumbers,
                      code: JSON) -> str | None:
    query = numbers.match_query()
    if query is None:
        return None
    request: JSON = {"resourceType": "ServiceRequest", "identifier": numbers.identifiers(), "status": "active",
                     "intent": "order", "code": code, "subject": patient.reference()}
    return b.ensure(request, numbers.identifiers()[0], f"ServiceRequest|{numbers.key}", query=query)


def _report_status(obr: Segment, group: OrderGroup) -> str:
    status = _REPORT_STATUS.get(present(obr.value(25)).upper())
    if status:
        return status
    codes = {present(s.value(11)).upper() for s in group.segments if s.name == "OBX"} - {""}
    return "final" if codes and codes <= {"F", "C"} else "preliminary" if codes else "registered"


def _effective(obr: Segment, b: Builder, out: JSON) -> None:
    start, end = ts(obr, 7, b.offset), ts(obr, 8, b.offset)
    if start and end:
        out["effectivePeriod"] = {"start": start, "end": end}
    elif start or end:
        out["effectiveDateTime"] = start or end


def observation(obx: Segment, segments: list[Segment], b: Builder, patient: PatientRef, key: str,
                request_url: str | None, specimen_url: str | None, obr: Segment | None = None) -> str:
    """OBX → Observation: status, category, code, value[x] with units, interpretation, reference range, effective
    time (OBX-14, else OBR-7), method, notes (NTE after the OBX); returns the fullUrl."""
    code = codeable_field(obx, 3)
    if code is None:
        raise MappingError("OBX", obx.index, 3, "the observation identifier is required", 1)
    identifier = Builder.derived("Observation", patient.key, key)
    out: JSON = {"resourceType": "Observation", "identifier": [identifier]}
    if request_url:
        out["basedOn"] = [ref(request_url)]
    out["status"] = _OBS_STATUS.get(present(obx.value(11)).upper(), "unknown")
    out["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory",
                                    "display": "Laboratory"}]}]
    out["code"] = code
    out["subject"] = patient.reference()
    effective = ts(obx, 14, b.offset) or (ts(obr, 7, b.offset) if obr is not None else None)
    if effective:
        out["effectiveDateTime"] = effective
    units = unit(obx.field(6).repetitions[0]) if obx.field(6) else {}
    out.update(obx_value(obx, units, b))
    flags = [c for c in (interpretation(r) for r in obx.field(8).repetitions) if c]
    if flags:
        out["interpretation"] = flags
    notes = notes_after(segments, obx)
    if notes:
        out["note"] = notes
    method = codeable_field(obx, 17)
    if method:
        out["method"] = method
    if specimen_url:
        out["specimen"] = ref(specimen_url)
    reference = reference_range(obx.value(7), units)
    if reference:
        out["referenceRange"] = [reference]
    return b.put(out, identifier, f"Observation|{key}")


def obx_value(obx: Segment, units: JSON, b: Builder) -> JSON:
    """OBX-5 by its OBX-2 value type → ``value[x]`` (first repetition; text types join their repetitions)."""
    kind = present(obx.value(2)).upper()
    reps = obx.field(5).repetitions
    if not reps or not any(present(r.raw) for r in reps):
        return {}
    first = reps[0]
    raw = present(first.component(1))
    if kind == "NM":
        number = decimal(raw)
        if number is None:
            raise MappingError("OBX", obx.index, 5, f"{raw!r} is not a number (OBX-2 is NM)", 1)
        return {"valueQuantity": quantity(number, units)}
    if kind == "SN":
        return _structured_numeric(obx, units)
    if kind in ("CE", "CWE", "CNE", "CF"):
        concept = codeable(first)
        return {"valueCodeableConcept": concept} if concept else {}
    if kind in ("DT", "TS", "DTM"):
        value = ts(obx, 5, b.offset)
        return {"valueDateTime": value} if value else {}
    if kind == "TM":
        return {"valueTime": _time(obx, raw)}
    # ST, TX, FT, ID, IS and anything else: text (TX/FT keep every component, repetitions are lines)
    if kind in ("TX", "FT"):
        text = "\n".join(present(_decoded(r)) for r in reps)
    else:
        text = "\n".join(present(r.component(1)) for r in reps)
    return {"valueString": text} if text.strip() else {}


def _decoded(rep: Repetition) -> str:
    return "^".join("&".join(subs) for subs in rep.components).rstrip("^")


def _time(obx: Segment, raw: str) -> str:
    digits = raw.split("+")[0].split("-")[0]
    try:
        stamp = parse_ts("2000010" + "1" + digits[:6].ljust(6, "0")) if digits.isdigit() else None
    except ValueError:
        stamp = None
    if stamp is None or len(digits) < 4:
        raise MappingError("OBX", obx.index, 5, f"{raw!r} is not a time (HHMM[SS]) (OBX-2 is TM)", 1)
    d = digits.ljust(6, "0")
    return f"{d[0:2]}:{d[2:4]}:{d[4:6]}"


def _structured_numeric(obx: Segment, units: JSON) -> JSON:
    rep = obx.field(5).repetitions[0]
    comparator = present(rep.component(1))
    first, separator, second = present(rep.component(2)), present(rep.component(3)), present(rep.component(4))
    a, c = decimal(first), decimal(second)
    if a is None:
        raise MappingError("OBX", obx.index, 5, f"structured numeric {rep.raw!r}: the first number is missing", 2)
    if separator in (":", "/") and c is not None:
        return {"valueRatio": {"numerator": {"value": a}, "denominator": {"value": c}}}
    if separator == "-" and c is not None:
        return {"valueRange": {"low": quantity(a, units), "high": quantity(c, units)}}
    if comparator and comparator not in ("<", ">", "<=", ">=", "=", "<>"):
        raise MappingError("OBX", obx.index, 5, f"structured numeric comparator {comparator!r} is not one of "
                           "<, >, <=, >=, =, <>", 1)
    fhir_comparator = comparator if comparator in ("<", ">", "<=", ">=") else None
    return {"valueQuantity": quantity(a, units, fhir_comparator)}


def _attachment(obx: Segment) -> JSON | None:
    rep = obx.field(5).repetitions[0] if obx.field(5) else None
    if rep is None:
        return None
    title = present(obx.value(3, 2)) or present(obx.value(3, 1))
    out: JSON = {}
    if present(obx.value(2)).upper() == "RP":
        url = present(rep.component(1))
        if not url:
            return None
        subtype = present(rep.component(4)).upper()
        out["contentType"] = _MIME.get(subtype, "application/octet-stream")
        out["url"] = url
    else:
        data = present(rep.component(5))
        if not data or present(rep.component(4)).upper() not in ("BASE64", "A"):
            return None
        subtype = present(rep.component(3)).upper()
        out["contentType"] = _MIME.get(subtype, "application/octet-stream")
        if present(rep.component(4)).upper() == "A":
            data = base64.b64encode(data.encode()).decode()
        out["data"] = data
    if title:
        out["title"] = title
    return out

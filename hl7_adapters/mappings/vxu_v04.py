"""VXU^V04 (unsolicited vaccination record update) → one Immunization per RXA, and the Patient (conditional update
from PID: immunization registries send the current demographics).

Keyed by the filler order number ORC-3 (the sender's immunization id), else the placer ORC-2, else patient +
vaccine + date.  vaccineCode RXA-5 (CVX → http://hl7.org/fhir/sid/cvx), occurrence RXA-3, dose RXA-6/RXA-7
(999 = unknown, left out), primarySource RXA-9 (00 = new record), performer RXA-10 (AP) and ORC-12 (OP), location
RXA-11/RXA-27, lot RXA-15, expiration RXA-16, manufacturer RXA-17 (MVX), status RXA-20/RXA-21, refusal reason
RXA-18, route/site RXR-1/RXR-2, program eligibility (OBX 64994-7) and funding source (OBX 30963-3).
"""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import PatientRef, patient_entry
from hl7_adapters.mappings._types import (
    JSON,
    codeable,
    codeable_field,
    decimal,
    ei,
    location_display,
    present,
    quantity,
    table_field,
    ts,
    unit,
    xcn_field,
)
from hl7_adapters.v2.message import Message, Segment

MVX = "http://hl7.org/fhir/sid/mvx"
PERFORMER_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"
_NOT_DONE = {"RE", "NA"}


def to_bundle(msg: Message) -> dict[str, Any]:
    b = Builder(msg)
    patient = patient_entry(b, update=True)
    for rxa in b.required("RXA", "vaccine administration"):
        immunization(rxa, msg, b, patient)
    return b.bundle()


def _context(rxa: Segment, msg: Message) -> tuple[Segment | None, list[Segment]]:
    """The ORC before this RXA and the RXR/OBX/NTE segments after it."""
    orc = next((s for s in reversed(msg.segments[:rxa.index]) if s.name in ("ORC", "RXA")), None)
    following: list[Segment] = []
    for seg in msg.segments[rxa.index + 1:]:
        if seg.name in ("ORC", "RXA"):
            break
        following.append(seg)
    return (orc if orc is not None and orc.name == "ORC" else None), following


def immunization(rxa: Segment, msg: Message, b: Builder, patient: PatientRef) -> None:
    orc, following = _context(rxa, msg)
    vaccine = codeable_field(rxa, 5)
    if vaccine is None:
        raise MappingError("RXA", rxa.index, 5, "the administered code (vaccine, CVX) is required", 1)
    when = ts(rxa, 3, b.offset)
    if when is None:
        raise MappingError("RXA", rxa.index, 3, "the administration date/time is required")
    identifier = None
    if orc is not None:
        for n, system in ((3, b.application_system), (2, b.application_system)):
            identifier = ei(orc.field(n).repetitions[0], system) if orc.field(n) else None
            if identifier:
                break
    first = (vaccine.get("coding") or [{}])[0]
    identifier = identifier or Builder.derived("Immunization", patient.key, first.get("system", ""),
                                               first.get("code", ""), when)
    out: JSON = {"resourceType": "Immunization", "identifier": [identifier], "status": _status(rxa)}
    reason = codeable_field(rxa, 18)
    if reason and out["status"] == "not-done":
        out["statusReason"] = reason
    out["vaccineCode"] = vaccine
    out["patient"] = patient.reference()
    out["occurrenceDateTime"] = when
    source = present(rxa.value(9, 1))
    if source:
        out["primarySource"] = source == "00"
        origin = codeable(rxa.field(9).repetitions[0])
        if source != "00" and origin:
            out["reportOrigin"] = origin
    where = location_display(rxa.field(27).repetitions[0]) if rxa.field(27) else None
    where = where or (location_display(rxa.field(11).repetitions[0]) if rxa.field(11) else None)
    if where:
        out["location"] = {"display": where}
    manufacturer = _manufacturer(rxa)
    if manufacturer:
        out["manufacturer"] = manufacturer
    lot = present(rxa.value(15))
    if lot:
        out["lotNumber"] = lot
    expires = ts(rxa, 16, None, kind="date")
    if expires:
        out["expirationDate"] = expires
    _route_site(following, out)
    amount = decimal(rxa.value(6))
    if amount is not None and present(rxa.value(6)) != "999":
        units = unit(rxa.field(7).repetitions[0]) if rxa.field(7) else {}
        out["doseQuantity"] = quantity(amount, units)
    performers = _performers(rxa, orc, b)
    if performers:
        out["performer"] = performers
    _observations(following, out)
    b.put(out, identifier, f"Immunization|{identifier.get('system', '')}|{identifier['value']}")


def _status(rxa: Segment) -> str:
    if present(rxa.value(21)).upper() == "D":
        return "entered-in-error"
    return "not-done" if present(rxa.value(20)).upper() in _NOT_DONE else "completed"


def _manufacturer(rxa: Segment) -> JSON | None:
    code, name = present(rxa.value(17, 1)), present(rxa.value(17, 2))
    if not (code or name):
        return None
    out: JSON = {}
    if code:
        system = MVX if present(rxa.value(17, 3)).upper() == "MVX" else None
        out["identifier"] = {**({"system": system} if system else {}), "value": code}
    if name:
        out["display"] = name
    return out


def _route_site(following: list[Segment], out: JSON) -> None:
    rxr = next((s for s in following if s.name == "RXR"), None)
    if rxr is None:
        return
    route, site = table_field(rxr, 1, "0162"), table_field(rxr, 2, "0163")
    if route:
        out["route"] = route
    if site:
        out["site"] = site


def _performers(rxa: Segment, orc: Segment | None, b: Builder) -> list[JSON]:
    out = []
    for seg, n, code, display in ((rxa, 10, "AP", "Administering Provider"),
                                  (orc, 12, "OP", "Ordering Provider")):
        who = xcn_field(seg, n, b.sender_system) if seg is not None else None
        if who:
            out.append({"function": {"coding": [{"system": PERFORMER_FUNCTION, "code": code, "display": display}]},
                        "actor": who})
    return out


def _observations(following: list[Segment], out: JSON) -> None:
    for obx in (s for s in following if s.name == "OBX"):
        code = present(obx.value(3, 1))
        value = codeable(obx.field(5).repetitions[0]) if obx.field(5) else None
        if value is None:
            continue
        if code == "64994-7":
            out.setdefault("programEligibility", []).append(value)
        elif code == "30963-3":
            out["fundingSource"] = value

"""RDE^O11 (pharmacy/treatment encoded order) → one MedicationRequest per ORC group (ORC, TQ1, RXO, RXR, RXC,
RXE), matched by placer order number ORC-2 (else filler ORC-3) like lab orders.

medication RXE-2 (else RXO-1); dose RXE-3/RXE-4 in RXE-5 units; rate RXE-23/RXE-24; instructions RXE-7; timing
TQ1-3 (repeat pattern) and TQ1-7/TQ1-8 (bounds); route RXR-1, site RXR-2; dispense RXE-10/RXE-11, refills RXE-12;
substitution RXO-9; status from ORC-1/ORC-5; requester ORC-12; authored ORC-9.
"""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._orders import (
    OrderGroup,
    notes_after,
    order_groups,
    order_numbers,
    require_numbers,
)
from hl7_adapters.mappings._patient import PatientRef, patient_entry
from hl7_adapters.mappings._types import (
    JSON,
    codeable_field,
    decimal,
    present,
    quantity,
    table_field,
    ts,
    unit,
    xcn_field,
)
from hl7_adapters.v2.message import Message, Segment

_STATUS = {"NW": "active", "OK": "active", "RL": "active", "XO": "active", "XX": "active", "SC": "active",
           "CA": "cancelled", "OC": "cancelled", "CR": "cancelled", "DC": "stopped", "OD": "stopped",
           "DR": "stopped", "HD": "on-hold", "OH": "on-hold", "RE": "completed"}
_ORDER_STATUS = {"CM": "completed", "CA": "cancelled", "DC": "stopped", "HD": "on-hold", "IP": "active",
                 "SC": "active", "ER": "entered-in-error"}


def to_bundle(msg: Message) -> dict[str, Any]:
    b = Builder(msg)
    patient = patient_entry(b, update=False)
    body = [s for s in msg.segments if s.name not in ("MSH", "SFT", "PID", "PD1", "PV1", "PV2", "IN1", "IN2",
                                                      "GT1", "AL1", "NK1")]
    groups, _ = order_groups(body)
    if not groups:
        raise MappingError("ORC", -1, None, "RDE^O11 needs an ORC (common order) segment")
    for group in groups:
        medication_request(group, b, patient)
    return b.bundle()


def _first(group: OrderGroup, name: str) -> Segment | None:
    return next((s for s in group.segments if s.name == name), None)


def medication_request(group: OrderGroup, b: Builder, patient: PatientRef) -> None:
    orc = group.anchor
    numbers = order_numbers(group, b.application_system, b.receiver_system)
    require_numbers(numbers, group)
    rxe, rxo = _first(group, "RXE"), _first(group, "RXO")
    medication = (codeable_field(rxe, 2) if rxe else None) or (codeable_field(rxo, 1) if rxo else None)
    if medication is None:
        seg = rxe or rxo
        raise MappingError(seg.name if seg else "RXE", seg.index if seg else -1, 2 if rxe or not rxo else 1,
                           "the medication (RXE-2 give code, or RXO-1 requested give code) is required")
    status = _ORDER_STATUS.get(present(orc.value(5)).upper()) or _STATUS.get(present(orc.value(1)).upper(),
                                                                            "active")
    out: JSON = {"resourceType": "MedicationRequest", "identifier": numbers.identifiers(), "status": status,
                 "intent": "order", "medicationCodeableConcept": medication, "subject": patient.reference()}
    authored = ts(orc, 9, b.offset)
    if authored:
        out["authoredOn"] = authored
    requester = xcn_field(orc, 12, b.sender_system)
    if requester:
        out["requester"] = requester
    notes = notes_after(group.segments, rxe) if rxe else []
    if notes:
        out["note"] = notes
    out["dosageInstruction"] = [_dosage(group, rxe, b)]
    if rxe is not None:
        dispense = _dispense(rxe)
        if dispense:
            out["dispenseRequest"] = dispense
    substitution = present(rxo.value(9)).upper() if rxo else ""
    if substitution in ("G", "T", "N"):
        out["substitution"] = {"allowedBoolean": substitution != "N"}
    query = numbers.match_query()
    assert query is not None
    b.put(out, numbers.identifiers()[0], f"MedicationRequest|{numbers.key}", query=query)


def _dosage(group: OrderGroup, rxe: Segment | None, b: Builder) -> JSON:
    out: JSON = {"sequence": 1}
    if rxe is not None:
        text = "; ".join(t for t in (present(r.component(2)) or present(r.component(1))
                                     for r in rxe.field(7).repetitions) if t)
        if text:
            out["text"] = text
    tq1 = _first(group, "TQ1")
    if tq1 is not None:
        timing: JSON = {}
        pattern = codeable_field(tq1, 3)
        if pattern:
            for coding in pattern.get("coding", []):
                coding.setdefault("system", "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation")
            timing["code"] = pattern
        start, end = ts(tq1, 7, b.offset), ts(tq1, 8, b.offset)
        bounds = {k: v for k, v in (("start", start), ("end", end)) if v}
        if bounds:
            timing["repeat"] = {"boundsPeriod": bounds}
        if timing:
            out["timing"] = timing
    rxr = _first(group, "RXR")
    if rxr is not None:
        route, site = table_field(rxr, 1, "0162"), table_field(rxr, 2, "0163")
        if route:
            out["route"] = route
        if site:
            out["site"] = site
    if rxe is not None:
        dose_rate = _dose_rate(rxe)
        if dose_rate:
            out["doseAndRate"] = [dose_rate]
    return out


def _dose_rate(rxe: Segment) -> JSON:
    units = unit(rxe.field(5).repetitions[0]) if rxe.field(5) else {}
    low, high = decimal(rxe.value(3)), decimal(rxe.value(4))
    out: JSON = {}
    if low is not None and high is not None:
        out["doseRange"] = {"low": quantity(low, units), "high": quantity(high, units)}
    elif low is not None:
        out["doseQuantity"] = quantity(low, units)
    rate = decimal(rxe.value(23))
    if rate is not None:
        rate_units = unit(rxe.field(24).repetitions[0]) if rxe.field(24) else {}
        out["rateQuantity"] = quantity(rate, rate_units)
    return out


def _dispense(rxe: Segment) -> JSON:
    out: JSON = {}
    repeats = present(rxe.value(12))
    if repeats.isdigit():
        out["numberOfRepeatsAllowed"] = int(repeats)
    amount = decimal(rxe.value(10))
    if amount is not None:
        units = unit(rxe.field(11).repetitions[0]) if rxe.field(11) else {}
        out["quantity"] = quantity(amount, units)
    return out

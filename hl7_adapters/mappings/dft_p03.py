"""DFT^P03 (post detail financial transaction) → one ChargeItem per FT1.

Keyed by the transaction id FT1-2 (else patient + FT1-1 set id + FT1-4 date + FT1-7 code); code FT1-7,
occurrence FT1-4, entered FT1-5, quantity FT1-10, price FT1-11 (extended amount), reason FT1-19, performer FT1-20,
product FT1-29 (NDC), note FT1-8; status from FT1-6 (CG charge → billable, CD credit → aborted).
"""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import PatientRef, patient_entry
from hl7_adapters.mappings._types import (
    JSON,
    codeable_field,
    codeable_list,
    decimal,
    ei,
    present,
    ts,
    xcn_field,
)
from hl7_adapters.v2.message import Message, Segment

_STATUS = {"CG": "billable", "CD": "aborted"}
PERFORMER_FUNCTION = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0912", "code": "PP",
                                  "display": "Primary Performer"}]}


def to_bundle(msg: Message) -> dict[str, Any]:
    b = Builder(msg)
    patient = patient_entry(b, update=False)
    for seg in b.required("FT1", "financial transaction"):
        charge_item(seg, b, patient)
    return b.bundle()


def charge_item(seg: Segment, b: Builder, patient: PatientRef) -> None:
    code = codeable_field(seg, 7)
    if code is None:
        raise MappingError("FT1", seg.index, 7, "the transaction code is required", 1)
    kind = present(seg.value(6)).upper()
    if kind not in _STATUS:
        raise MappingError("FT1", seg.index, 6, f"transaction type {kind or '(empty)'!r} is not a charge (CG) or "
                           "credit (CD); payments and adjustments are not mapped to ChargeItem")
    when = ts(seg, 4, b.offset)
    given = ei(seg.field(2).repetitions[0], b.sender_system) if seg.field(2) else None
    first = (code.get("coding") or [{}])[0]
    identifier = given or Builder.derived("ChargeItem", patient.key, present(seg.value(1)), when or "",
                                          first.get("system", ""), first.get("code", ""))
    out: JSON = {"resourceType": "ChargeItem", "identifier": [identifier], "status": _STATUS[kind],
                 "code": code, "subject": patient.reference()}
    end = ts(seg, 4, b.offset, component=2)
    if when and end:
        out["occurrencePeriod"] = {"start": when, "end": end}
    elif when:
        out["occurrenceDateTime"] = when
    performer = xcn_field(seg, 20, b.sender_system)
    if performer:
        out["performer"] = [{"function": PERFORMER_FUNCTION, "actor": performer}]
    count = decimal(seg.value(10))
    if count is not None:
        out["quantity"] = {"value": count}
    price = decimal(seg.value(11, 1, 0, 1))
    if price is not None:
        currency = present(seg.value(11, 1, 0, 2)).upper()
        out["priceOverride"] = {"value": price, **({"currency": currency} if len(currency) == 3 else {})}
    entered = ts(seg, 5, b.offset)
    if entered:
        out["enteredDate"] = entered
    reasons = codeable_list(seg, 19)
    if reasons:
        out["reason"] = reasons
    product = codeable_field(seg, 29)
    if product:
        out["productCodeableConcept"] = product
    description = present(seg.value(8))
    if description:
        out["note"] = [{"text": description}]
    b.put(out, identifier, f"ChargeItem|{identifier.get('system', '')}|{identifier['value']}")

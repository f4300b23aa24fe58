"""Orders: ORC/OBR → ServiceRequest identified by placer/filler order numbers, SPM → Specimen, and the order
groups of ORM/OML/ORU/OUL messages.

Order numbers: ``ServiceRequest.identifier`` carries the placer number (ORC-2, else OBR-2) with type ``PLAC`` and
the filler number (ORC-3, else OBR-3) with type ``FILL`` (table 0203).  The system comes from the EI namespace /
universal id; when the sender leaves it out, from the application that assigns such numbers (the placer is MSH-3
of an order and MSH-5 of a result; the filler the other way round).  A ServiceRequest is **matched by type and
value** (``identifier:of-type=…|PLAC|<number>``, else ``…|FILL|<number>``), so an order created over REST with any
system links to the results that quote its number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from hl7_adapters.mappings._bundle import Builder, ref
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import PatientRef
from hl7_adapters.mappings._types import (
    JSON,
    codeable_field,
    decimal,
    ei,
    ei_parts,
    present,
    text_or_code,
    ts,
    unit_parts,
    v2_code,
    xcn_field,
)
from hl7_adapters.v2.message import Segment

IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "T": "urgent", "C": "urgent"}
_ORDER_CONTROL = {"NW": "active", "OK": "active", "RL": "active", "XO": "active", "XX": "active",
                  "XR": "active", "SN": "active", "NA": "active", "CA": "revoked", "OC": "revoked",
                  "CR": "revoked", "DC": "revoked", "OD": "revoked", "DR": "revoked", "HD": "on-hold",
                  "OH": "on-hold", "RE": "completed"}
_ORDER_STATUS = {"CM": "completed", "CA": "revoked", "DC": "revoked", "HD": "on-hold", "IP": "active",
                 "SC": "active", "A": "active", "ER": "entered-in-error", "RP": "active"}


@dataclass
class OrderGroup:
    """One order in a message: its ORC and/or OBR, and the segments that follow them."""

    orc: Segment | None = None
    obr: Segment | None = None
    segments: list[Segment] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)

    @property
    def anchor(self) -> Segment:
        seg = self.obr or self.orc
        assert seg is not None
        return seg


def order_groups(segments: list[Segment], *, specimen_first: bool = False) -> tuple[list[OrderGroup], list[Segment]]:
    """Split a message body into order groups (an ORC opens one, an OBR joins the open ORC or opens one) and the
    segments before the first order.  With ``specimen_first`` (OUL), an SPM belongs to the orders that follow it."""
    groups: list[OrderGroup] = []
    before: list[Segment] = []
    pending_specimen: Segment | None = None
    for seg in segments:
        current = groups[-1] if groups else None
        if seg.name == "ORC":
            if current is not None and current.orc is None and current.obr is not None and \
                    not any(s.name == "OBX" for s in current.segments):
                current.orc = seg  # OUL: OBR then ORC of the same order
                continue
            groups.append(OrderGroup(orc=seg, specimens=[pending_specimen] if pending_specimen else []))
        elif seg.name == "OBR":
            if current is not None and current.obr is None:
                current.obr = seg
            else:
                groups.append(OrderGroup(obr=seg, specimens=[pending_specimen] if pending_specimen else []))
        elif seg.name == "SPM":
            if specimen_first:
                pending_specimen = seg
                if current is not None and current.obr is None:
                    current.specimens.append(seg)
            elif current is not None:
                current.specimens.append(seg)
            else:
                before.append(seg)
        elif current is not None:
            current.segments.append(seg)
        else:
            before.append(seg)
    return groups, before


@dataclass
class OrderNumbers:
    placer: JSON | None
    filler: JSON | None

    def match_query(self) -> str | None:
        """``identifier:of-type=<v2-0203>|PLAC|<placer>`` (else FILL); None without numbers."""
        for kind, ident in (("PLAC", self.placer), ("FILL", self.filler)):
            if ident:
                value = ident["value"].replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,") \
                    .replace("$", "\\$")
                return "identifier:of-type=" + quote(f"{IDENTIFIER_TYPE}|{kind}|{value}", safe="")
        return None

    def identifiers(self) -> list[JSON]:
        return [i for i in (self.placer, self.filler) if i]

    @property
    def key(self) -> str:
        ident = self.placer or self.filler
        assert ident is not None
        return f"{'PLAC' if self.placer else 'FILL'}|{ident['value']}"


def order_numbers(group: OrderGroup, placer_system: str | None, filler_system: str | None) -> OrderNumbers:
    def first(n: int, kind: str, system: str | None) -> JSON | None:
        for seg in (group.orc, group.obr):
            if seg is None:
                continue
            reps = seg.field(n).repetitions
            ident = ei(reps[0], system, kind) if reps else None
            if ident:
                return ident
        return None

    return OrderNumbers(first(2, "PLAC", placer_system), first(3, "FILL", filler_system))


def order_status(group: OrderGroup) -> str:
    if group.orc is not None:
        status = _ORDER_STATUS.get(present(group.orc.value(5)).upper())
        if status:
            return status
        control = _ORDER_CONTROL.get(present(group.orc.value(1)).upper())
        if control:
            return control
    return "active"


def priority(group: OrderGroup, b: Builder) -> str | None:
    for seg in group.segments:
        if seg.name == "TQ1":
            return _PRIORITY.get(present(seg.value(9)).upper())
    for anchor in (group.obr, group.orc):
        if anchor is not None:
            code = present(anchor.value(27, 6)) if anchor.name == "OBR" else present(anchor.value(7, 6))
            if code:
                return _PRIORITY.get(code.upper())
    return None


def service_request(group: OrderGroup, b: Builder, patient: PatientRef, numbers: OrderNumbers,
                    status: str) -> JSON:
    """ORC/OBR → ServiceRequest (identifiers, status, intent, priority, code, subject, dates, requester,
    reason, notes)."""
    out: JSON = {"resourceType": "ServiceRequest", "identifier": numbers.identifiers()}
    if group.orc is not None:
        group_number = ei(group.orc.field(4).repetitions[0], b.application_system) if group.orc.field(4) else None
        if group_number:
            out["requisition"] = {k: group_number[k] for k in ("system", "value") if k in group_number}
    out["status"] = status
    out["intent"] = "order"
    section = present(group.obr.value(24)) if group.obr is not None else ""
    if section:
        out["category"] = [{"coding": [v2_code("0074", section)]}]
    prio = priority(group, b)
    if prio:
        out["priority"] = prio
    code = codeable_field(group.obr, 4) if group.obr is not None else None
    if code:
        out["code"] = code
    out["subject"] = patient.reference()
    when = _occurrence(group, b)
    if when:
        out["occurrenceDateTime"] = when
    authored = ts(group.orc, 9, b.offset) if group.orc is not None else None
    if authored:
        out["authoredOn"] = authored
    requester = (xcn_field(group.orc, 12, b.sender_system) if group.orc is not None else None) or \
        (xcn_field(group.obr, 16, b.sender_system) if group.obr is not None else None)
    if requester:
        out["requester"] = requester
    reasons = [c for c in (codeable_field(s, 3) for s in group.segments if s.name == "DG1") if c]
    if group.obr is not None:
        reasons += [c for c in (text_or_code(group.obr, 31),) if c]
    if reasons:
        out["reasonCode"] = reasons
    notes = notes_after(group.segments, None)
    if notes:
        out["note"] = notes
    return out


def _occurrence(group: OrderGroup, b: Builder) -> str | None:
    for seg in group.segments:
        if seg.name == "TQ1" and present(seg.value(7)):
            return ts(seg, 7, b.offset)
    if group.orc is not None and group.orc.field(7):
        when = ts(group.orc, 7, b.offset, component=4)
        if when:
            return when
    if group.obr is not None:
        return ts(group.obr, 6, b.offset)
    return None


def notes_after(segments: list[Segment], anchor: Segment | None) -> list[JSON]:
    """The NTE segments that directly follow ``anchor`` (or open the list when None) → Annotation."""
    out: list[JSON] = []
    started = anchor is None
    for seg in segments:
        if anchor is not None and seg is anchor:
            started = True
            continue
        if not started:
            continue
        if seg.name == "PRT":  # v2.7+ participation segments may sit between a segment and its notes
            continue
        if seg.name != "NTE":
            if anchor is not None or out:
                break
            continue
        text = "\n".join(t for t in (present(r.component(1)) for r in seg.field(3).repetitions) if t)
        if text:
            out.append({"text": text})
    return out


# -- SPM → Specimen ------------------------------------------------------------------------------------------------


def specimen(seg: Segment, b: Builder, patient: PatientRef, request_url: str | None, scope: str) -> str:
    """SPM → Specimen (placer id as identifier, filler id as accessionIdentifier, type, collection, received
    time, condition, note), keyed by its ids (else by ``scope`` + SPM-1); returns the fullUrl."""
    out: JSON = {"resourceType": "Specimen"}
    placer = ei_parts(seg.value(2, 1, 0, 1), seg.value(2, 1, 0, 2), seg.value(2, 1, 0, 3), seg.value(2, 1, 0, 4),
                      b.application_system)
    filler = ei_parts(seg.value(2, 2, 0, 1), seg.value(2, 2, 0, 2), seg.value(2, 2, 0, 3), seg.value(2, 2, 0, 4),
                      b.sender_system)
    identifier = filler or placer or Builder.derived("Specimen", scope, present(seg.value(1)))
    out["identifier"] = [i for i in (placer, filler) if i] or [identifier]
    if filler:
        out["accessionIdentifier"] = filler
    availability = present(seg.value(20)).upper()
    if availability in ("Y", "N"):
        out["status"] = "available" if availability == "Y" else "unavailable"
    kind = codeable_field(seg, 4)
    if kind:
        out["type"] = kind
    out["subject"] = patient.reference()
    received = ts(seg, 18, b.offset)
    if received:
        out["receivedTime"] = received
    if request_url:
        out["request"] = [ref(request_url)]
    collection = _collection(seg, b)
    if collection:
        out["collection"] = collection
    condition = [c for c in (codeable_field(seg, 24),) if c]
    if condition:
        out["condition"] = condition
    description = present(seg.value(14))
    if description:
        out["note"] = [{"text": description}]
    key = f"Specimen|{identifier.get('system', '')}|{identifier['value']}"
    if b.has(key):
        return b.full_url(key)
    return b.put(out, identifier, key)


def _collection(seg: Segment, b: Builder) -> JSON:
    out: JSON = {}
    start, end = ts(seg, 17, b.offset, component=1), ts(seg, 17, b.offset, component=2)
    if start and end:
        out["collectedPeriod"] = {"start": start, "end": end}
    elif start:
        out["collectedDateTime"] = start
    method = codeable_field(seg, 7)
    if method:
        out["method"] = method
    site = codeable_field(seg, 8)
    if site:
        out["bodySite"] = site
    number = decimal(seg.value(12, 1))
    if number is not None:
        units = unit_parts(seg.value(12, 2, 0, 1), seg.value(12, 2, 0, 2), seg.value(12, 2, 0, 3))
        out["quantity"] = {"value": number, **units}
    return out


def require_orders(groups: list[OrderGroup], b: Builder) -> None:
    if not groups:
        raise MappingError("OBR", -1, None, f"{b.msg.message_type}^{b.msg.trigger_event} has no order (ORC/OBR)")


def require_numbers(numbers: OrderNumbers, group: OrderGroup) -> None:
    if numbers.placer is None and numbers.filler is None:
        seg = group.orc or group.anchor
        raise MappingError(seg.name, seg.index, 2, "neither a placer (ORC-2/OBR-2) nor a filler (ORC-3/OBR-3) "
                           "order number: the order cannot be identified", 1)

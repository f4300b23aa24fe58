"""SIU^S12/S13/S14/S15/S17/S26 (new, rescheduled, modified, cancelled, deleted, no-show appointment) → Appointment.

Keyed by the filler appointment id SCH-2 (else the placer id SCH-1); times from TQ1-7/TQ1-8 (else SCH-11.4/11.5,
else AIS-4 + AIS-7 minutes); participants: the patient, AIP personnel, AIL locations, AIG resources.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._orders import notes_after
from hl7_adapters.mappings._patient import PatientRef, patient_entry
from hl7_adapters.mappings._types import (
    JSON,
    codeable_field,
    ei,
    location_display,
    present,
    text_or_code,
    ts,
    xcn,
)
from hl7_adapters.v2.message import Message, Segment

STATUS = {"S12": "booked", "S13": "booked", "S14": "booked", "S15": "cancelled", "S17": "entered-in-error",
          "S26": "noshow"}
# HL7 table 0278 filler status codes (SCH-25) that override the event's default for S12-S14
_FILLER_STATUS = {"PENDING": "pending", "WAITLIST": "waitlist", "BOOKED": "booked", "STARTED": "arrived",
                  "COMPLETE": "fulfilled", "CANCELLED": "cancelled", "DELETED": "entered-in-error",
                  "NOSHOW": "noshow", "OVERBOOK": "booked"}
_MINUTES = {"MIN": 1, "M": 1, "MINUTES": 1, "H": 60, "HR": 60, "HOURS": 60, "HOUR": 60}


def to_bundle(msg: Message) -> dict[str, Any]:
    b = Builder(msg)
    sch = msg.first("SCH")
    if sch is None:
        raise MappingError("SCH", -1, None, "an SIU message needs its SCH (schedule activity) segment")
    identifier = _identifier(sch, b)
    patient = patient_entry(b, update=False)
    status = STATUS[msg.trigger_event.strip().upper()]
    if msg.trigger_event.upper() in ("S12", "S13", "S14"):
        status = _FILLER_STATUS.get(present(sch.value(25)).upper(), status)
    out: JSON = {"resourceType": "Appointment", "identifier": [identifier], "status": status}
    for key, value in (("serviceType", [c for c in (codeable_field(s, 3) for s in msg.all("AIS")) if c]),
                       ("appointmentType", text_or_code(sch, 8)),
                       ("reasonCode", [c for c in (text_or_code(sch, 7),) if c])):
        if value:
            out[key] = value
    start, end = _times(sch, msg, b, status)
    if start and end:
        out["start"], out["end"] = start, end
        minutes = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() // 60)
        if minutes > 0:
            out["minutesDuration"] = minutes
    header: list[Segment] = []
    for seg in msg.segments[sch.index + 1:]:  # the NTEs of the schedule (after SCH and its TQ1)
        if seg.name not in ("TQ1", "NTE"):
            break
        header.append(seg)
    notes = notes_after([s for s in header if s.name == "NTE"], None)
    if notes:
        out["comment"] = "\n".join(n["text"] for n in notes)
    out["participant"] = _participants(msg, b, patient)
    b.put(out, identifier, f"Appointment|{identifier.get('system', '')}|{identifier['value']}")
    return b.bundle()


def _identifier(sch: Segment, b: Builder) -> JSON:
    for n in (2, 1):
        reps = sch.field(n).repetitions
        ident = ei(reps[0], b.application_system) if reps else None
        if ident:
            return ident
    raise MappingError("SCH", sch.index, 2, "neither a filler (SCH-2) nor a placer (SCH-1) appointment id", 1)


def _times(sch: Segment, msg: Message, b: Builder, status: str) -> tuple[str | None, str | None]:
    tq1 = msg.first("TQ1")
    where: tuple[Segment, int, int] | None = None
    start = end = None
    if tq1 is not None and present(tq1.value(7)):
        start, end, where = ts(tq1, 7, b.offset, kind="instant"), ts(tq1, 8, b.offset, kind="instant"), (tq1, 7, 1)
    elif present(sch.value(11, 4)):
        start = ts(sch, 11, b.offset, component=4, kind="instant")
        end = ts(sch, 11, b.offset, component=5, kind="instant")
        where = (sch, 11, 4)
    else:
        ais = msg.first("AIS")
        if ais is not None and present(ais.value(4)):
            start, where = ts(ais, 4, b.offset, kind="instant"), (ais, 4, 1)
            length = present(ais.value(7))
            factor = _MINUTES.get(present(ais.value(8, 1)).upper(), 1)
            if start and length.isdigit():
                end = (datetime.fromisoformat(start) + timedelta(minutes=int(length) * factor)).isoformat()
                end = end.replace("+00:00", "Z")
    if start and not end:
        seg, n, _ = where  # type: ignore[misc]
        raise MappingError(seg.name, seg.index, n + 1 if seg.name == "TQ1" else n,
                           "the appointment has a start but no end (or duration)")
    if not start:
        if where is not None:
            seg, n, comp = where
            raise MappingError(seg.name, seg.index, n, "the start needs a time of day and a UTC offset (in the "
                               "value or MSH-7)", comp)
        if status not in ("proposed", "cancelled", "waitlist", "entered-in-error"):
            raise MappingError("TQ1", -1, 7, f"a {status} appointment needs a start (TQ1-7, SCH-11.4 or AIS-4)")
    return start, end


def _participants(msg: Message, b: Builder, patient: PatientRef) -> list[JSON]:
    out: list[JSON] = [{"actor": patient.reference(), "required": "required", "status": "accepted"}]
    for seg in msg.all("AIP"):
        who = xcn(seg.field(3).repetitions[0], b.sender_system) if seg.field(3) else None
        if who:
            role = codeable_field(seg, 4)
            out.append({**({"type": [role]} if role else {}), "actor": who, "status": "accepted"})
    for seg in msg.all("AIL"):
        where = location_display(seg.field(3).repetitions[0]) if seg.field(3) else None
        if where:
            out.append({"actor": {"display": where}, "status": "accepted"})
    for seg in msg.all("AIG"):
        resource = codeable_field(seg, 3)
        text = resource and ((resource.get("coding") or [{}])[0].get("display") or resource.get("text"))
        if text:
            out.append({"actor": {"display": text}, "status": "accepted"})
    return out

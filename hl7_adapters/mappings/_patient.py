"""PID → Patient, NK1 → RelatedPerson, and the patient matching rule.

Matching rule: the patient is the one whose ``identifier`` equals the **first PID-3 repetition of type MR**
(else the first PID-3 repetition with a value; else PID-2, the v2.3 external id; else PID-4), with
``Identifier.system`` taken from that CX's assigning authority (CX-4: ``urn:oid:`` for an ISO OID, the namespace id
under ``urn:infirmary:hl7v2:authority:`` otherwise; when CX-4 is empty, the sending facility MSH-4).
"""

from __future__ import annotations

from hl7_adapters.mappings._bundle import Builder, ref
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._types import (
    JSON,
    codeable_field,
    cx,
    date_from_ts,
    present,
    ts,
    v2_code,
    xad,
    xpn,
    xtn,
)
from hl7_adapters.v2.message import Repetition, Segment

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown",
           "X": "other", "T": "other"}
# HL7 table 0002 → v3 MaritalStatus (extensible binding; codes not in it keep the v2 table)
_MARITAL = {"A": "A", "D": "D", "I": "I", "L": "L", "M": "M", "P": "P", "S": "S", "T": "T", "U": "U",
            "W": "W", "C": "T", "G": "T", "R": "T", "E": "L", "N": "A", "O": "UNK", "B": "U"}
_MARITAL_DISPLAY = {"A": "Annulled", "D": "Divorced", "I": "Interlocutory", "L": "Legally Separated",
                    "M": "Married", "P": "Polygamous", "S": "Never Married", "T": "Domestic partner",
                    "U": "unmarried", "W": "Widowed", "UNK": "unknown"}
MARITAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


class PatientRef:
    """The patient of a message: its matching identifier and the fullUrl the other entries refer to."""

    def __init__(self, identifier: JSON, url: str, display: str | None) -> None:
        self.identifier = identifier
        self.url = url
        self.display = display

    @property
    def key(self) -> str:
        return f"{self.identifier.get('system', '')}|{self.identifier['value']}"

    def reference(self) -> JSON:
        return ref(self.url, self.display)


def require_pid(b: Builder) -> Segment:
    pid = b.msg.first("PID")
    if pid is None:
        raise MappingError("PID", -1, None, f"{b.msg.message_type}^{b.msg.trigger_event} needs a PID segment "
                           "(patients are matched by identifier)")
    return pid


def matching_identifier(seg: Segment, fallback_system: str | None, fields: tuple[int, ...] = (3, 2, 4)) -> JSON:
    """The identifier the patient is matched by (see the module docstring); ``fields`` in order of preference,
    the first being the identifier list (PID-3; MRG-1 for the prior patient of a merge)."""
    candidates: list[JSON] = []
    for n in fields:
        for rep in seg.field(n).repetitions:
            ident = cx(rep, fallback_system)
            if ident is None:
                continue
            if n == fields[0] and present(rep.component(5)).upper() == "MR":
                return _clean(ident)
            candidates.append(ident)
        if candidates:
            return _clean(candidates[0])
    raise MappingError(seg.name, seg.index, fields[0], f"no patient identifier ({seg.name}-{fields[0]} is empty): "
                       "patients are matched by identifier (MRN)", 1)


def _clean(ident: JSON) -> JSON:
    return {k: ident[k] for k in ("system", "value") if k in ident}


def patient(pid: Segment, b: Builder) -> JSON:
    """PID → Patient (identifiers, names, birth date, gender, addresses, telecoms, language, marital status,
    death, multiple birth)."""
    out: JSON = {"resourceType": "Patient"}
    identifiers = [i for n in (3, 2, 4) for i in (cx(r, b.sender_system) for r in pid.field(n).repetitions) if i]
    ssn = present(pid.value(19))
    if ssn and not any(i.get("value") == ssn for i in identifiers):
        identifiers.append({"type": {"coding": [v2_code("0203", "SS")]}, "system": SSN_SYSTEM, "value": ssn})
    if identifiers:
        out["identifier"] = _unique(identifiers)
    out["active"] = True
    names = [n for n in (xpn(r) for r in pid.field(5).repetitions) if n]
    if names:
        out["name"] = names
    telecom = [t for n in (13, 14) for t in (_telecom(r, "work" if n == 14 else None)
                                            for r in pid.field(n).repetitions) if t]
    if telecom:
        out["telecom"] = telecom
    gender = _GENDER.get(present(pid.value(8)).upper())
    if gender:
        out["gender"] = gender
    birth = date_from_ts(pid, 7)
    if birth:
        out["birthDate"] = birth
    _deceased(pid, b, out)
    addresses = [a for a in (xad(r) for r in pid.field(11).repetitions) if a]
    if addresses:
        out["address"] = addresses
    marital = _marital(pid)
    if marital:
        out["maritalStatus"] = marital
    _multiple_birth(pid, out)
    language = codeable_field(pid, 15)
    if language:
        out["communication"] = [{"language": language, "preferred": True}]
    return out


def _telecom(rep: Repetition, default_use: str | None) -> JSON | None:
    point = xtn(rep)
    if point and default_use and "use" not in point:
        point["use"] = default_use
    return point


def _unique(items: list[JSON]) -> list[JSON]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        key = (item.get("system", ""), item["value"])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _deceased(pid: Segment, b: Builder, out: JSON) -> None:
    when = ts(pid, 29, b.offset)
    flag = present(pid.value(30)).upper()
    if when:
        out["deceasedDateTime"] = when
    elif flag in ("Y", "N"):
        out["deceasedBoolean"] = flag == "Y"


def _multiple_birth(pid: Segment, out: JSON) -> None:
    order = present(pid.value(25))
    flag = present(pid.value(24)).upper()
    if order.isdigit() and int(order) > 0:
        out["multipleBirthInteger"] = int(order)
    elif flag in ("Y", "N"):
        out["multipleBirthBoolean"] = flag == "Y"


def _marital(pid: Segment) -> JSON | None:
    code = present(pid.value(16)).upper()
    if not code:
        return None
    v3 = _MARITAL.get(code)
    text = present(pid.value(16, 2))
    coding = {"system": MARITAL_SYSTEM, "code": v3, "display": _MARITAL_DISPLAY[v3]} if v3 else \
        v2_code("0002", code, text or None)
    return {"coding": [coding], **({"text": text} if text else {})}


def patient_entry(b: Builder, *, update: bool) -> PatientRef:
    """The message's patient: a conditional update from PID (ADT) or a conditional create that leaves an existing
    patient untouched (results, orders, schedules, charges)."""
    pid = require_pid(b)
    identifier = matching_identifier(pid, b.sender_system)
    resource = patient(pid, b)
    if not any(i.get("value") == identifier["value"] and i.get("system") == identifier.get("system")
               for i in resource.get("identifier", [])):
        resource.setdefault("identifier", []).insert(0, identifier)
    key = f"Patient|{identifier.get('system', '')}|{identifier['value']}"
    url = b.put(resource, identifier, key) if update else b.ensure(resource, identifier, key)
    display = _display(resource)
    return PatientRef(identifier, url, display)


def _display(resource: JSON) -> str | None:
    names = resource.get("name") or []
    if not names:
        return None
    name = names[0]
    return " ".join([*name.get("given", []), name.get("family", "")]).strip() or None


# -- NK1 → RelatedPerson -------------------------------------------------------------------------------------------


def related_people(b: Builder, patient_ref: PatientRef) -> None:
    """Each NK1 → RelatedPerson (name, relationship in table 0063, addresses, phones), keyed by patient + NK1
    name (+ set id when there is no name)."""
    for seg in b.msg.all("NK1"):
        person = _related(seg, b, patient_ref)
        if person is None:
            continue
        name = person.get("name", [{}])[0]
        who = f"{name.get('family', '')}|{'/'.join(name.get('given', []))}" if name else present(seg.value(1))
        identifier = Builder.derived("RelatedPerson", patient_ref.key, who)
        person["identifier"] = [identifier, *person.get("identifier", [])]
        b.put(person, identifier, f"RelatedPerson|{patient_ref.key}|{who}")


def _related(seg: Segment, b: Builder, patient_ref: PatientRef) -> JSON | None:
    names = [n for n in (xpn(r) for r in seg.field(2).repetitions) if n]
    if not names:
        names = [n for n in (xpn(r) for r in seg.field(30).repetitions) if n]  # contact person's name
    if not names:
        return None
    out: JSON = {"resourceType": "RelatedPerson", "active": True, "patient": patient_ref.reference()}
    ids = [i for i in (cx(r, b.sender_system) for r in seg.field(12).repetitions) if i]
    if ids:
        out["identifier"] = ids
    relationship = _relationship(seg)
    if relationship:
        out["relationship"] = [relationship]
    out["name"] = names
    telecom = [t for n in (5, 6) for t in (_telecom(r, "work" if n == 6 else None)
                                          for r in seg.field(n).repetitions) if t]
    if telecom:
        out["telecom"] = telecom
    addresses = [a for a in (xad(r) for r in seg.field(4).repetitions) if a]
    if addresses:
        out["address"] = addresses
    start, end = ts(seg, 8, b.offset, kind="date"), ts(seg, 9, b.offset, kind="date")
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        out["period"] = period
    return out


def _relationship(seg: Segment) -> JSON | None:
    concept = codeable_field(seg, 3)
    if concept is None:
        return None
    first = concept.get("coding", [{}])[0]
    if first and "system" not in first and not present(seg.value(3, 3)) and first["code"].isupper():
        first["system"] = "http://terminology.hl7.org/CodeSystem/v2-0063"  # table 0063 is the field's table
    if "coding" in concept and all("system" not in c for c in concept["coding"]):
        return {"text": concept["coding"][0].get("display") or concept["coding"][0]["code"]}
    return concept

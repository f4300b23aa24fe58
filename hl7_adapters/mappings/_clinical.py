"""The clinical and administrative segments that travel with a patient: PV1/PV2 → Encounter, AL1 →
AllergyIntolerance, DG1 → Condition, IN1 → Coverage."""

from __future__ import annotations

from hl7_adapters.mappings._bundle import Builder, ref
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import PatientRef
from hl7_adapters.mappings._types import (
    JSON,
    codeable,
    codeable_field,
    coding_system,
    cx,
    ei,
    location_display,
    present,
    table_field,
    text_or_code,
    ts,
    v2_code,
    xcn,
    xpn,
)
from hl7_adapters.v2.message import Segment

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# HL7 table 0004 patient class → v3 ActEncounterCode
_CLASS = {"E": ("EMER", "emergency"), "I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"),
          "P": ("PRENC", "pre-admission"), "R": ("AMB", "ambulatory"), "B": ("IMP", "inpatient encounter"),
          "N": ("AMB", "ambulatory")}
_PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"),
                 (17, "ADM", "admitter"))


class EncounterRef:
    def __init__(self, url: str) -> None:
        self.url = url


def encounter(b: Builder, patient: PatientRef, status: str) -> EncounterRef | None:
    """PV1 (+PV2) → Encounter, matched by the visit number PV1-19 (else patient + admit time PV1-44).
    ``status`` is the event's; ``"derive"`` takes it from the discharge/admit times."""
    pv1 = b.msg.first("PV1")
    if pv1 is None:
        return None
    out: JSON = {"resourceType": "Encounter"}
    visit = [i for i in (cx(r, b.sender_system) for r in pv1.field(19).repetitions) if i]
    start, end = ts(pv1, 44, b.offset), ts(pv1, 45, b.offset)
    identifier: JSON
    if visit:
        identifier = {k: visit[0][k] for k in ("system", "value") if k in visit[0]}
    elif start:
        identifier = Builder.derived("Encounter", patient.key, start)
        visit = [identifier]
    else:
        raise MappingError("PV1", pv1.index, 19, "neither a visit number (PV1-19) nor an admit date/time "
                           "(PV1-44): the encounter cannot be identified")
    if status == "derive":
        status = "finished" if end else "in-progress" if start else "planned"
    out["identifier"] = visit
    out["status"] = status
    out["class"] = _class(pv1)
    admission_type = present(pv1.value(4))
    if admission_type:
        out["type"] = [{"coding": [v2_code("0007", admission_type)]}]
    service = table_field(pv1, 10, "0069")
    if service:
        out["serviceType"] = service
    out["subject"] = patient.reference()
    participants = _participants(pv1, b)
    if participants:
        out["participant"] = participants
    period = {k: v for k, v in (("start", start), ("end", end if status != "in-progress" else None)) if v}
    if period:
        out["period"] = period
    pv2 = b.msg.first("PV2")
    reason = codeable_field(pv2, 3) if pv2 else None
    if reason:
        out["reasonCode"] = [reason]
    hospitalization = _hospitalization(pv1)
    if hospitalization:
        out["hospitalization"] = hospitalization
    locations = _locations(pv1, status)
    if locations:
        out["location"] = locations
    url = b.put(out, identifier, f"Encounter|{identifier.get('system', '')}|{identifier['value']}")
    return EncounterRef(url)


def _class(pv1: Segment) -> JSON:
    code = present(pv1.value(2)).upper()
    if not code:
        raise MappingError("PV1", pv1.index, 2, "the patient class is required (table 0004: E, I, O, P, R, B, N)")
    if code in _CLASS:
        act, display = _CLASS[code]
        return {"system": ACT_CODE, "code": act, "display": display}
    return v2_code("0004", code)


def _participants(pv1: Segment, b: Builder) -> list[JSON]:
    out = []
    for n, code, display in _PARTICIPANTS:
        for rep in pv1.field(n).repetitions:
            who = xcn(rep, b.sender_system)
            if who:
                out.append({"type": [{"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}],
                            "individual": who})
    return out


def _hospitalization(pv1: Segment) -> JSON:
    out: JSON = {}
    for key, n, table in (("admitSource", 14, "0023"), ("dischargeDisposition", 36, "0112"),
                          ("reAdmission", 13, "0092")):
        code = present(pv1.value(n))
        if code:
            out[key] = {"coding": [v2_code(table, code)]}
    diets = [c for c in (text_or_code(pv1, 38),) if c]
    if diets:
        out["dietPreference"] = diets
    return out


def _locations(pv1: Segment, status: str) -> list[JSON]:
    out = []
    current = location_display(pv1.field(3).repetitions[0]) if pv1.field(3) else None
    prior = location_display(pv1.field(6).repetitions[0]) if pv1.field(6) else None
    if current:
        out.append({"location": {"display": current},
                    "status": "completed" if status in ("finished", "cancelled") else "active"})
    if prior and prior != current:
        out.append({"location": {"display": prior}, "status": "completed"})
    return out


# -- AL1 → AllergyIntolerance -----------------------------------------------------------------------------------

_ALLERGY_CATEGORY = {"DA": "medication", "FA": "food", "EA": "environment", "PA": "environment",
                     "LA": "environment", "AA": "environment"}
_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}
_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def allergies(b: Builder, patient: PatientRef) -> None:
    """Each AL1 → AllergyIntolerance keyed by patient + allergen (AL1-3)."""
    for seg in b.msg.all("AL1"):
        code = codeable_field(seg, 3)
        if code is None:
            raise MappingError("AL1", seg.index, 3, "the allergen code/mnemonic/description is required")
        out: JSON = {"resourceType": "AllergyIntolerance",
                     "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
                     "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]}}
        kind = present(seg.value(2, 1)).upper()
        if kind in _ALLERGY_CATEGORY or kind == "MA":
            out["type"] = "allergy"
        if kind in _ALLERGY_CATEGORY:
            out["category"] = [_ALLERGY_CATEGORY[kind]]
        severity = present(seg.value(4, 1)).upper()
        if severity in _CRITICALITY:
            out["criticality"] = _CRITICALITY[severity]
        out["code"] = code
        out["patient"] = patient.reference()
        onset = ts(seg, 6, b.offset)
        if onset:
            out["onsetDateTime"] = onset
        manifestations = [{"text": t} for t in (present(r.component(1)) for r in seg.field(5).repetitions) if t]
        if manifestations:
            reaction: JSON = {"manifestation": manifestations}
            if severity in _SEVERITY:
                reaction["severity"] = _SEVERITY[severity]
            out["reaction"] = [reaction]
        allergen = present(seg.value(3, 1)) or present(seg.value(3, 2))
        identifier = Builder.derived("AllergyIntolerance", patient.key, present(seg.value(3, 3)), allergen)
        out["identifier"] = [identifier]
        b.put(out, identifier, f"AllergyIntolerance|{patient.key}|{allergen}")


# -- DG1 → Condition ---------------------------------------------------------------------------------------------

CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_DIAGNOSIS_ROLE = {"A": ("AD", "Admission diagnosis"), "F": ("DD", "Discharge diagnosis"),
                   "W": ("CM", "Comorbidity diagnosis")}


def conditions(b: Builder, patient: PatientRef, enc: EncounterRef | None) -> list[tuple[str, JSON | None]]:
    """Each DG1 → Condition (encounter diagnosis) keyed by DG1-20 or patient + code; returns (fullUrl, role)."""
    out = []
    for seg in b.msg.all("DG1"):
        code = codeable_field(seg, 3)
        if code is None and present(seg.value(4)):
            code = {"text": present(seg.value(4))}
        if code is None:
            raise MappingError("DG1", seg.index, 3, "the diagnosis code (or DG1-4 description) is required")
        method = coding_system(present(seg.value(2)))
        for coding in code.get("coding", []):
            if "system" not in coding and method:
                coding["system"] = method
        kind = present(seg.value(6)).upper()
        resource: JSON = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION,
                                               "code": "confirmed" if kind == "F" else "provisional"}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis",
                                      "display": "Encounter Diagnosis"}]}],
            "code": code,
            "subject": patient.reference(),
        }
        if enc:
            resource["encounter"] = ref(enc.url)
        recorded = ts(seg, 5, b.offset)
        if recorded:
            resource["recordedDate"] = recorded
        recorder = xcn(seg.field(16).repetitions[0], b.sender_system) if seg.field(16) else None
        if recorder:
            resource["recorder"] = recorder
        ids = seg.field(20).repetitions
        given = None
        if ids and present(ids[0].component(1)):
            given = ei(ids[0], b.sender_system)
        first = (code.get("coding") or [{}])[0]
        identifier = given or Builder.derived("Condition", patient.key, first.get("system", ""),
                                              first.get("code", code.get("text", "")))
        resource["identifier"] = [identifier]
        url = b.put(resource, identifier, f"Condition|{identifier.get('system', '')}|{identifier['value']}")
        role = _DIAGNOSIS_ROLE.get(kind)
        out.append((url, {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role",
                                      "code": role[0], "display": role[1]}]} if role else None))
    return out


def link_diagnoses(b: Builder, enc: EncounterRef | None, diagnoses: list[tuple[str, JSON | None]]) -> None:
    if enc is None or not diagnoses:
        return
    for entry in b.entries:
        if entry["fullUrl"] == enc.url:
            entry["resource"]["diagnosis"] = [
                {"condition": ref(url), **({"use": use} if use else {}), "rank": i + 1}
                for i, (url, use) in enumerate(diagnoses)
            ]


# -- IN1 → Coverage ------------------------------------------------------------------------------------------------

_RELATIONSHIP = {"SEL": "self", "SPO": "spouse", "CHD": "child", "PAR": "parent", "MTH": "parent",
                 "FTH": "parent", "DOM": "common", "EME": "other", "OTH": "other", "01": "spouse", "18": "self",
                 "19": "child", "1": "self", "2": "spouse", "3": "child"}
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"


def coverages(b: Builder, patient: PatientRef) -> None:
    """Each IN1 → Coverage keyed by patient + payer (IN1-3/IN1-4) + plan (IN1-2) + policy number (IN1-36)."""
    for seg in b.msg.all("IN1"):
        payer_ids = [i for i in (cx(r, b.sender_system) for r in seg.field(3).repetitions) if i]
        payer_name = present(seg.value(4))
        plan = present(seg.value(2, 1))
        policy = present(seg.value(36))
        if not (payer_ids or payer_name or plan):
            raise MappingError("IN1", seg.index, 3, "the insurance company (IN1-3 id or IN1-4 name) or plan "
                               "(IN1-2) is required")
        payor: JSON = {}
        if payer_ids:
            payor["identifier"] = {k: payer_ids[0][k] for k in ("system", "value") if k in payer_ids[0]}
        payor["display"] = payer_name or plan or payer_ids[0]["value"]
        out: JSON = {"resourceType": "Coverage", "status": "active"}
        plan_type = table_field(seg, 15, "0086")
        if plan_type:
            out["type"] = plan_type
        subscriber_id = policy or present(seg.value(49, 1))
        if subscriber_id:
            out["subscriberId"] = subscriber_id
        insured = [n for n in (xpn(r) for r in seg.field(16).repetitions) if n]
        relationship = present(seg.value(17, 1)).upper()
        if insured and _RELATIONSHIP.get(relationship) != "self":
            name = insured[0]
            out["subscriber"] = {"display": " ".join([*name.get("given", []), name.get("family", "")]).strip()}
        out["beneficiary"] = patient.reference()
        if relationship in _RELATIONSHIP:
            out["relationship"] = {"coding": [{"system": SUBSCRIBER_RELATIONSHIP,
                                               "code": _RELATIONSHIP[relationship]}]}
        start, end = ts(seg, 12, b.offset, kind="date"), ts(seg, 13, b.offset, kind="date")
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        if period:
            out["period"] = period
        out["payor"] = [payor]
        classes = _classes(seg)
        if classes:
            out["class"] = classes
        order = present(seg.value(1))
        if order.isdigit() and int(order) > 0:
            out["order"] = int(order)
        payer_key = payer_ids[0]["value"] if payer_ids else payer_name
        identifier = Builder.derived("Coverage", patient.key, payer_key, plan, policy)
        out["identifier"] = [identifier]
        b.put(out, identifier, f"Coverage|{identifier['value']}")


def _classes(seg: Segment) -> list[JSON]:
    out = []
    group, group_name = present(seg.value(8)), present(seg.value(9, 1))
    if group:
        out.append({"type": {"coding": [{"system": COVERAGE_CLASS, "code": "group"}]}, "value": group,
                    **({"name": group_name} if group_name else {})})
    plan = codeable(seg.field(2).repetitions[0]) if seg.field(2) else None
    plan_id = present(seg.value(2, 1))
    if plan_id:
        name = (plan or {}).get("coding", [{}])[0].get("display")
        out.append({"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]}, "value": plan_id,
                    **({"name": name} if name else {})})
    return out

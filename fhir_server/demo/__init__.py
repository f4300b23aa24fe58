"""A small, fixed demo data set for ``make run``: a hospital, its staff and a few patients with some history.

Every resource has a fixed id and is written with update-as-create, so loading twice changes nothing but
versions.  Nothing here is used outside demo mode.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.services.resources import ResourceService

HOSPITAL = "infirmary-general"
MRN = "https://infirmary.example.org/fhir/sid/mrn"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

_PATIENTS = [
    ("pat-alice", "Alice", "Ng", "female", "1984-03-12", "MRN-1001"),
    ("pat-bruno", "Bruno", "Costa", "male", "1957-11-02", "MRN-1002"),
    ("pat-chioma", "Chioma", "Okafor", "female", "2016-06-21", "MRN-1003"),
    ("pat-dmitri", "Dmitri", "Volkov", "male", "1979-01-30", "MRN-1004"),
    ("pat-elena", "Elena", "García", "female", "1992-08-09", "MRN-1005"),
]
_PRACTITIONERS = [
    ("prac-house", "Gregory", "House", "1234567893"),
    ("prac-yang", "Cristina", "Yang", "1245319599"),
    ("prac-nightingale", "Florence", "Nightingale", "1679576722"),
]


def _patient(pid: str, given: str, family: str, gender: str, birth: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"use": "usual", "system": MRN, "value": mrn}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [{"system": "email", "value": f"{given.lower()}@example.org", "use": "home"}],
        "gender": gender,
        "birthDate": birth,
        "managingOrganization": {"reference": f"Organization/{HOSPITAL}"},
    }


def _vital(oid: str, pid: str, code: str, display: str, value: str, unit: str, ucum: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": jsonio.FhirDecimal(value), "unit": unit, "system": UCUM, "code": ucum},
    }


def demo_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": HOSPITAL,
            "active": True,
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                  "code": "prov", "display": "Healthcare Provider"}]}],
            "name": "Infirmary General Hospital",
            "telecom": [{"system": "phone", "value": "+1-555-0100", "use": "work"}],
        },
        {
            "resourceType": "Location",
            "id": "loc-er",
            "status": "active",
            "name": "Emergency Department",
            "mode": "instance",
            "managingOrganization": {"reference": f"Organization/{HOSPITAL}"},
        },
    ]
    for prid, given, family, npi in _PRACTITIONERS:
        name: dict[str, Any] = {"family": family, "given": [given]}
        if prid != "prac-nightingale":
            name["prefix"] = ["Dr."]
        out.append({
            "resourceType": "Practitioner",
            "id": prid,
            "identifier": [{"system": NPI, "value": npi}],
            "active": True,
            "name": [name],
        })
    out.extend(_patient(*p) for p in _PATIENTS)
    out.append({
        "resourceType": "Encounter",
        "id": "enc-bruno-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory"},
        "subject": {"reference": "Patient/pat-bruno"},
        "participant": [{"individual": {"reference": "Practitioner/prac-yang"}}],
        "period": {"start": "2026-10-02T09:00:00+00:00", "end": "2026-10-02T09:30:00+00:00"},
    })
    out.append(_vital("obs-bruno-bp-sys", "pat-bruno", "8480-6", "Systolic blood pressure", "142", "mmHg",
                      "mm[Hg]", "2026-10-02T09:10:00+00:00"))
    out.append(_vital("obs-bruno-weight", "pat-bruno", "29463-7", "Body weight", "72.50", "kg", "kg",
                      "2026-10-02T09:12:00+00:00"))
    out.append(_vital("obs-alice-temp", "pat-alice", "8310-5", "Body temperature", "37.2", "Cel", "Cel",
                      "2026-11-20T14:00:00+00:00"))
    out.append({
        "resourceType": "Condition",
        "id": "cond-bruno-htn",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": SNOMED, "code": "38341003", "display": "Hypertensive disorder"}]},
        "subject": {"reference": "Patient/pat-bruno"},
        "onsetDateTime": "2019-05-01",
    })
    out.append({
        "resourceType": "AllergyIntolerance",
        "id": "allergy-alice-penicillin",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": "764146007", "display": "Penicillin"}]},
        "patient": {"reference": "Patient/pat-alice"},
    })
    out.append({
        "resourceType": "MedicationRequest",
        "id": "medrx-bruno-lisinopril",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
            "display": "lisinopril 10 MG Oral Tablet"}]},
        "subject": {"reference": "Patient/pat-bruno"},
        "requester": {"reference": "Practitioner/prac-yang"},
        "dosageInstruction": [{"text": "10 mg by mouth once daily",
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    })
    return out


async def load_demo(resources: ResourceService) -> int:
    """Write the demo data set (update-as-create by fixed id); returns the number of resources written."""
    count = 0
    for resource in demo_resources():
        await resources.update(resource["resourceType"], resource["id"], jsonio.dumps(resource))
        count += 1
    return count

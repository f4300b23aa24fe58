"""The hospital's specialties: one ``HealthcareService`` each, coded with SNOMED CT concepts of the R4 value set
``c80-practice-codes`` (http://hl7.org/fhir/ValueSet/c80-practice-codes, "Practice Setting Code Value Set").

The value set has no general paediatrics concept (only paediatric subspecialties), so paediatrics is offered as
the subspecialties a hospital usually runs clinics for.  Seeding is idempotent (fixed ids, update-as-create):
``infirmary scheduling seed`` and demo mode call :func:`seed_specialties`.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.services.resources import ResourceService

SNOMED = "http://snomed.info/sct"
PRACTICE_CODES = "http://hl7.org/fhir/ValueSet/c80-practice-codes"

#: (id, SNOMED CT code, display as in the value set, name of the service)
SPECIALTIES: tuple[tuple[str, str, str, str], ...] = (
    ("general-medicine", "394802001", "General medicine", "General medicine clinic"),
    ("general-practice", "394814009", "General practice", "General practice"),
    ("cardiology", "394579002", "Cardiology", "Cardiology clinic"),
    ("orthopaedics", "394801008", "Surgery-Trauma and orthopedics", "Trauma and orthopaedics clinic"),
    ("paediatric-cardiology", "408459003", "Pediatric cardiology", "Paediatric cardiology clinic"),
    ("paediatric-infectious-diseases", "418862001", "Pediatric infectious diseases",
     "Paediatric infectious diseases clinic"),
    ("dermatology", "394582007", "Dermatology", "Dermatology clinic"),
    ("neurology", "394591006", "Neurology", "Neurology clinic"),
    ("obstetrics-gynaecology", "394585009", "Obstetrics and gynecology", "Obstetrics and gynaecology clinic"),
    ("ophthalmology", "394594003", "Ophthalmology", "Eye clinic"),
    ("psychiatry", "394587001", "Psychiatry", "Psychiatry clinic"),
    ("radiology", "394914008", "Radiology", "Radiology"),
)

def specialty(code: str) -> dict[str, Any]:
    """The CodeableConcept of a specialty by SNOMED CT code (as used on PractitionerRole, Schedule and Slot)."""
    for _, snomed, display, _ in SPECIALTIES:
        if snomed == code:
            return {"coding": [{"system": SNOMED, "code": snomed, "display": display}]}
    raise KeyError(code)


def healthcare_services(organization: str | None = None) -> list[dict[str, Any]]:
    out = []
    for sid, code, display, name in SPECIALTIES:
        service: dict[str, Any] = {
            "resourceType": "HealthcareService", "id": f"hs-{sid}", "active": True,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-category",
                                      "code": "35", "display": "Hospital"}]}],
            "type": [{"text": f"{display} consultation"}],
            "specialty": [specialty(code)],
            "name": name,
            "appointmentRequired": True,
        }
        if organization:
            service["providedBy"] = {"reference": f"Organization/{organization}"}
        out.append(service)
    return out


async def seed_specialties(resources: ResourceService, organization: str | None = None) -> int:
    """Write one HealthcareService per specialty (update-as-create by fixed id); returns how many."""
    services = healthcare_services(organization)
    for service in services:
        await resources.update("HealthcareService", service["id"], jsonio.dumps(service))
    return len(services)

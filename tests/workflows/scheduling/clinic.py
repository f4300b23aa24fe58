"""A small clinic for the scheduling tests: specialties, a practitioner with a role and availability, patients."""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.services.resources import ResourceService
from fhir_server.workflows.scheduling.specialties import seed_specialties, specialty

CARDIOLOGY = "394579002"
DERMATOLOGY = "394582007"


def role(rid: str, practitioner: str, code: str, *, start: str = "09:00:00", end: str = "12:00:00",
         days: list[str] | None = None, location: str = "loc-1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole", "id": rid, "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "location": [{"reference": f"Location/{location}"}],
        "healthcareService": [{"reference": "HealthcareService/hs-cardiology" if code == CARDIOLOGY
                               else "HealthcareService/hs-dermatology"}],
        "specialty": [specialty(code)],
        "availableTime": [{"daysOfWeek": days or ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                           "availableStartTime": start, "availableEndTime": end}],
        **extra,
    }


def clinic_resources() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Location", "id": "loc-1", "status": "active", "name": "Outpatients A"},
        {"resourceType": "Location", "id": "loc-2", "status": "active", "name": "Outpatients B"},
        {"resourceType": "Practitioner", "id": "prac-1", "name": [{"family": "Heart", "given": ["Hana"]}]},
        {"resourceType": "Practitioner", "id": "prac-2", "name": [{"family": "Skin", "given": ["Sam"]}]},
        {"resourceType": "Patient", "id": "pat-1", "name": [{"family": "One", "given": ["Pat"]}]},
        {"resourceType": "Patient", "id": "pat-2", "name": [{"family": "Two", "given": ["Pia"]}]},
        role("role-card", "prac-1", CARDIOLOGY),
        role("role-derm", "prac-2", DERMATOLOGY, start="14:00:00", end="16:00:00", location="loc-2"),
    ]


async def seed_clinic(resources: ResourceService, extra: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    await seed_specialties(resources)
    for resource in [*clinic_resources(), *extra]:
        await resources.update(resource["resourceType"], resource["id"], jsonio.dumps(resource))

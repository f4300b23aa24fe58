"""Demo scheduling data: the specialties, outpatient clinics of the demo practitioners with their weekly
availability, and the slots generated from it, so that ``make run`` has bookable appointments."""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.demo import HOSPITAL
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import SchedulingSettings
from fhir_server.workflows.scheduling import Scheduling
from fhir_server.workflows.scheduling.specialties import seed_specialties, specialty

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def _hours(days: list[str], start: str, end: str) -> dict[str, Any]:
    return {"daysOfWeek": days, "availableStartTime": start, "availableEndTime": end}


def _role(rid: str, practitioner: str, code: str, service: str, hours: list[dict[str, Any]],
          **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole", "id": rid, "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "organization": {"reference": f"Organization/{HOSPITAL}"},
        "specialty": [specialty(code)],
        "location": [{"reference": "Location/loc-outpatients"}],
        "healthcareService": [{"reference": f"HealthcareService/hs-{service}"}],
        "availableTime": hours,
        **extra,
    }


def scheduling_resources() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Location", "id": "loc-outpatients", "status": "active", "name": "Outpatient Clinics",
         "mode": "instance", "managingOrganization": {"reference": f"Organization/{HOSPITAL}"}},
        {"resourceType": "Practitioner", "id": "prac-wells", "active": True,
         "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1467476697"}],
         "name": [{"family": "Wells", "given": ["Marcus"], "prefix": ["Dr."]}]},
        _role("role-house-genmed", "prac-house", "394802001", "general-medicine",
              [_hours(WEEKDAYS, "09:00:00", "12:00:00"), _hours(WEEKDAYS, "14:00:00", "17:00:00")]),
        _role("role-yang-cardiology", "prac-yang", "394579002", "cardiology",
              [_hours(["mon", "wed", "fri"], "09:00:00", "13:00:00")]),
        _role("role-nightingale-gp", "prac-nightingale", "394814009", "general-practice",
              [_hours(["tue", "thu"], "10:00:00", "16:00:00")]),
        _role("role-wells-orthopaedics", "prac-wells", "394801008", "orthopaedics",
              [_hours(["tue", "thu"], "08:30:00", "12:30:00")],
              notAvailable=[{"description": "Conference", "during": {"start": "2026-12-10", "end": "2026-12-11"}}]),
    ]


async def load_scheduling_demo(resources: ResourceService, search: SearchService,
                               settings: SchedulingSettings) -> int:
    """Specialties, clinics and roles (update-as-create by fixed id), then their slots; returns the number of
    resources written before the slots."""
    count = await seed_specialties(resources, HOSPITAL)
    roles = []
    for resource in scheduling_resources():
        await resources.update(resource["resourceType"], resource["id"], jsonio.dumps(resource))
        if resource["resourceType"] == "PractitionerRole":
            roles.append(resource["id"])
        count += 1
    scheduling = Scheduling.of(resources, search, settings, None)
    for rid in roles:
        await scheduling.generator.generate(rid)
    return count

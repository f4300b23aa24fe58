"""Test data factories: valid R4 resources with sensible defaults and overrides."""

from __future__ import annotations

import uuid
from typing import Any


def make_patient(**overrides: Any) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://infirmary.example.org/mrn", "value": f"MRN-{uuid.uuid4().hex[:8]}"}],
        "active": True,
        "name": [{"family": "Ng", "given": ["Alice"]}],
        "gender": "female",
        "birthDate": "1984-03-12",
    }
    patient.update(overrides)
    return {k: v for k, v in patient.items() if v is not None}


def make_observation(patient_id: str = "p1", **overrides: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-10-02T09:12:00+00:00",
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    obs.update(overrides)
    return obs

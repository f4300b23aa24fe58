"""What every ADT event writes: the Patient (conditional update from PID) with its next of kin (NK1), allergies
(AL1), diagnoses (DG1) and insurance (IN1), and — for visit events — the Encounter from PV1/PV2."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._clinical import allergies, conditions, coverages, encounter, link_diagnoses
from hl7_adapters.mappings._patient import patient_entry, related_people
from hl7_adapters.v2.message import Message


def adt_bundle(msg: Message, encounter_status: str | None) -> dict[str, Any]:
    """The transaction Bundle of an ADT event; ``encounter_status`` None for person-only events (A28, A31)."""
    b = Builder(msg)
    patient = patient_entry(b, update=True)
    related_people(b, patient)
    enc = encounter(b, patient, encounter_status) if encounter_status else None
    allergies(b, patient)
    link_diagnoses(b, enc, conditions(b, patient, enc))
    coverages(b, patient)
    return b.bundle()

"""ADT^A02 (transfer a patient: PV1-3 is the new location, PV1-6 the prior one) → Patient, RelatedPerson, AllergyIntolerance, Condition, Coverage and an Encounter with status
``in-progress``."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message

ENCOUNTER_STATUS = "in-progress"


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, ENCOUNTER_STATUS)

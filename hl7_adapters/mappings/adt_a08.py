"""ADT^A08 (update patient information; the encounter status follows PV1-44/PV1-45: finished when discharged, in-progress when admitted, planned otherwise) → Patient, RelatedPerson, AllergyIntolerance, Condition, Coverage and an Encounter with status
``derive``."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message

ENCOUNTER_STATUS = "derive"


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, ENCOUNTER_STATUS)

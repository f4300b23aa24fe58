"""ADT^A11 (cancel admit/visit) → Patient, RelatedPerson, AllergyIntolerance, Condition, Coverage and an Encounter with status
``cancelled``."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message

ENCOUNTER_STATUS = "cancelled"


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, ENCOUNTER_STATUS)

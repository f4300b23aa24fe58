"""ADT^A05 and A14 (pre-admit and pending admit) → Patient, RelatedPerson, AllergyIntolerance, Condition, Coverage and an Encounter with status
``planned``."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message

ENCOUNTER_STATUS = "planned"


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, ENCOUNTER_STATUS)

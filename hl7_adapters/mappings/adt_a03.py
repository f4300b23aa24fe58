"""ADT^A03 (discharge/end visit: PV1-45 is the end, PV1-36 the disposition) → Patient, RelatedPerson, AllergyIntolerance, Condition, Coverage and an Encounter with status
``finished``."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message

ENCOUNTER_STATUS = "finished"


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, ENCOUNTER_STATUS)

"""ADT^A28 / ADT^A31 (add / update person information) → Patient, RelatedPerson, AllergyIntolerance, Condition
and Coverage; no Encounter (the PV1 of these events is a dummy)."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._adt import adt_bundle
from hl7_adapters.v2.message import Message


def to_bundle(msg: Message) -> dict[str, Any]:
    return adt_bundle(msg, None)

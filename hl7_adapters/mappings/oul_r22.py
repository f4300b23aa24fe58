"""OUL^R22 (specimen-oriented observation) → Specimen (SPM) with the DiagnosticReport + Observations of each order
(OBR/ORC, OBX) that follows it, linked to the ordering ServiceRequest by placer/filler number."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._results import results_bundle
from hl7_adapters.v2.message import Message


def to_bundle(msg: Message) -> dict[str, Any]:
    return results_bundle(msg, specimen_first=True)

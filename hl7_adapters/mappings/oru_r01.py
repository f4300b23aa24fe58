"""ORU^R01 (unsolicited observation result) → DiagnosticReport + Observation + Specimen per order group (ORC/OBR,
its OBX/NTE and SPM), linked to the ordering ServiceRequest by placer/filler number; the patient is matched by
identifier and created from PID only when unknown."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._results import results_bundle
from hl7_adapters.v2.message import Message


def to_bundle(msg: Message) -> dict[str, Any]:
    return results_bundle(msg, specimen_first=False)

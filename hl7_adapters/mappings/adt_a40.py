"""ADT^A40 (merge patient — patient identifier list): the patient of MRG-1 is merged into the patient of PID-3.

The Bundle holds, in one transaction:

* the surviving patient (conditional update from PID) with ``link`` ``replaces`` → the old patient;
* the old patient, found by its identifier (MRG-1, same matching rule as PID-3), patched with FHIRPath Patch:
  ``active = false`` and ``link`` ``replaced-by`` → the survivor (its previous ``replaced-by`` link, if any, is
  dropped first, so a repeated merge does not stack links).  The old patient must exist: a merge naming an unknown
  patient fails as a whole.

Moving the other resources' references from the old patient to the survivor needs to know which resources refer
to it, which a pure function cannot; :mod:`hl7_adapters.mappings.merge` adds those entries to this Bundle (one
version-checked update per resource of the old patient's compartment) before the transaction is run.
"""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import matching_identifier, patient_entry
from hl7_adapters.v2.message import Message

PRIOR_FIELDS = (1, 4, 2)  # MRG-1 prior patient identifier list, MRG-4 prior patient id, MRG-2 prior alternate id

def to_bundle(msg: Message) -> dict[str, Any]:
    b = Builder(msg)
    mrg = msg.first("MRG")
    if mrg is None:
        raise MappingError("MRG", -1, None, "ADT^A40 needs an MRG segment naming the patient merged away")
    old_identifier = matching_identifier(mrg, b.sender_system, PRIOR_FIELDS)
    survivor = patient_entry(b, update=True)
    if old_identifier == survivor.identifier:
        raise MappingError("MRG", mrg.index, 1, "the prior patient identifier (MRG-1) is the surviving patient's "
                           "identifier (PID-3): nothing to merge", 1)
    old_key = f"Patient|old|{old_identifier.get('system', '')}|{old_identifier['value']}"
    old_url = b.full_url(old_key)
    for entry in b.entries:
        if entry["fullUrl"] == survivor.url:
            entry["resource"]["link"] = [{"other": {"reference": old_url}, "type": "replaces"}]
    parameters = {"resourceType": "Parameters", "parameter": [
        _op("delete", "Patient.link.where(type = 'replaced-by')"),
        _op("delete", "Patient.active"),
        _op("add", "Patient", name="active", value={"valueBoolean": False}),
        _op("add", "Patient", name="link", parts=[
            {"name": "other", "valueReference": {"reference": survivor.url}},
            {"name": "type", "valueCode": "replaced-by"},
        ]),
    ]}
    b.patch("Patient", old_identifier, parameters, old_key)
    return b.bundle()


def _op(kind: str, path: str, *, name: str | None = None, value: dict[str, Any] | None = None,
        parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    part: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    if name:
        part.append({"name": "name", "valueString": name})
    if value is not None:
        part.append({"name": "value", **value})
    if parts is not None:
        part.append({"name": "value", "part": parts})
    return {"name": "operation", "part": part}

"""ORM^O01 and OML^O21 from a ServiceRequest (and its Patient), checked against hl7apy's message structures.

The message is written as ER7 here (each field from one FHIR element, escaped) and then parsed by hl7apy with
strict validation and group detection, which checks segment order, cardinalities and data types against the
structure of the configured version (``ORM_O01`` in v2.3 to v2.6, ``OML_O21`` in v2.4 to v2.8) before anything
is sent. That costs tens of milliseconds, which is fine for an order and would not be on the inbound hot path.
Quantity/timing is ORC-7/OBR-27 (TQ) before v2.5 and a TQ1 segment (OML) from v2.5 on.

Segments: MSH, PID (MRN, name, birth date, sex), PV1 (OML only when an encounter is known: not needed), ORC
(NW, placer order number, order date/time, ordering provider), OBR (placer order number, universal service id
from ``ServiceRequest.code``, priority, ordering provider), plus NTE for ``ServiceRequest.note``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from fhir_server.settings import LabEndpoint
from hl7_adapters.v2._delimiters import DEFAULT
from hl7_adapters.v2._escape import encode
from hl7_adapters.v2.ack import hl7_timestamp, version_tuple

log = logging.getLogger("hl7_adapters.outbound")

AUTHORITY_BASE = "urn:infirmary:hl7v2:authority:"
_SYSTEM_TO_V2 = {
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://hl7.org/fhir/sid/icd-10": "I10",
    "http://hl7.org/fhir/sid/icd-10-cm": "I10C",
}
_GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_PRIORITY = {"stat": "S", "asap": "A", "urgent": "A", "routine": "R"}
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")


class OrderBuildError(ValueError):
    """The ServiceRequest cannot be sent as an order (reason names the element)."""


def _e(text: Any) -> str:
    return encode(str(text), DEFAULT) if text is not None else ""


def hd(system: str, sep: str = "^") -> str:
    """Identifier.system → HD (namespace id, universal id, universal id type) with the given separator: the
    inverse of how the inbound mappings turn an assigning authority into a system."""
    if system.startswith(AUTHORITY_BASE):
        from urllib.parse import unquote

        return _e(unquote(system[len(AUTHORITY_BASE):]))
    if system.startswith("urn:oid:") and _OID.match(system[8:]):
        return f"{sep}{system[8:]}{sep}ISO"
    if system.startswith("urn:uuid:"):
        return f"{sep}{system[9:]}{sep}UUID"
    return f"{sep}{_e(system)}{sep}URI" if system else ""


def ei(identifier: dict[str, Any]) -> str:
    """Identifier → EI (entity id ^ namespace id ^ universal id ^ universal id type)."""
    authority = hd(str(identifier.get("system", "")))
    value = _e(identifier.get("value", ""))
    return f"{value}^{authority}" if authority else value


def _has_type(identifier: dict[str, Any], code: str) -> bool:
    return any(c.get("code") == code for c in identifier.get("type", {}).get("coding", []))


def placer_identifier(sr: dict[str, Any]) -> dict[str, Any] | None:
    for identifier in sr.get("identifier", []):
        if _has_type(identifier, "PLAC") and identifier.get("value"):
            return dict(identifier)
    return None


def _ts(value: str | None) -> str:
    """FHIR dateTime → HL7 TS (keeping the precision; the offset as +ZZZZ)."""
    if not value:
        return ""
    m = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?"
                 r"(Z|[+-]\d{2}:\d{2})?)?$", value)
    if m is None:
        return ""
    digits = "".join(g for g in m.groups()[:6] if g)
    zone = m.group(7)
    if zone:
        digits += "+0000" if zone == "Z" else zone.replace(":", "")
    return digits


def _coding(concept: dict[str, Any] | None) -> str:
    """CodeableConcept → CWE/CE: code^text^system (the first coding with a code)."""
    if not concept:
        return ""
    for coding in concept.get("coding", []):
        if coding.get("code"):
            system = str(coding.get("system", ""))
            name = _SYSTEM_TO_V2.get(system, "L" if not system else _e(system.rsplit("/", 1)[-1]))
            return f"{_e(coding['code'])}^{_e(coding.get('display') or concept.get('text') or '')}^{name}"
    return f"^{_e(concept.get('text', ''))}" if concept.get("text") else ""


def _xpn(names: Iterable[dict[str, Any]]) -> str:
    for name in names:
        given = name.get("given", [])
        return "^".join([_e(name.get("family", "")), _e(given[0] if given else ""),
                         _e(given[1] if len(given) > 1 else "")]).rstrip("^")
    return ""


def _cx(identifiers: Iterable[dict[str, Any]]) -> str:
    reps = []
    for identifier in identifiers:
        if not identifier.get("value"):
            continue
        kind = next((c.get("code") for c in identifier.get("type", {}).get("coding", []) if c.get("code")), "")
        authority = hd(str(identifier.get("system", "")), "&")
        reps.append(f"{_e(identifier['value'])}^^^{authority}^{_e(kind or 'MR')}")
    return "~".join(reps)


def _provider(reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    ref = str(reference.get("reference", ""))
    ident = ref.split("/", 1)[1] if ref.count("/") == 1 else ""
    display = _e(reference.get("display", ""))
    return f"{_e(ident)}^{display}" if (ident or display) else ""


def build_order(sr: dict[str, Any], patient: dict[str, Any] | None, lab: LabEndpoint, *, application: str,
                facility: str, control_id: str, placer: dict[str, Any], when: float | None = None) -> str:
    """The ER7 text of the order (segments end with ``\\r``)."""
    if not sr.get("code"):
        raise OrderBuildError("ServiceRequest.code is required to order a test (OBR-4)")
    message_type, trigger = lab.message.split("^")
    version = version_tuple(lab.version)
    if message_type == "ORM" and version >= (2, 7):
        raise OrderBuildError(f"ORM^O01 was withdrawn in HL7 v2.7; configure OML^O21 for v{lab.version}")
    if message_type == "OML" and version < (2, 4):
        raise OrderBuildError(f"OML^O21 exists from HL7 v2.4 on; configure ORM^O01 for v{lab.version}")
    structure = f"{message_type}_{trigger}"
    msg9 = f"{message_type}^{trigger}" + (f"^{structure}" if version_tuple(lab.version) >= (2, 4) else "")
    placer_ei = ei(placer)
    requester = _provider(sr.get("requester"))
    authored = _ts(sr.get("authoredOn")) or hl7_timestamp(when)
    segments = [
        "|".join(["MSH", "^~\\&", _e(application), _e(facility), _e(lab.receiving_application),
                  _e(lab.receiving_facility), hl7_timestamp(when), "", msg9, control_id, "P", lab.version]),
    ]
    if patient is not None:
        pid = ["PID", "1", "", _cx(patient.get("identifier", [])) or _e(patient.get("id", "")), "",
               _xpn(patient.get("name", [])), "", _ts(patient.get("birthDate")),
               _GENDER.get(str(patient.get("gender", "")), "")]
        segments.append("|".join(pid).rstrip("|"))
    priority = _PRIORITY.get(str(sr.get("priority", "")), "R")
    timing = f"^^^{authored}^^{priority}" if version_tuple(lab.version) < (2, 5) else ""  # ORC-7 TQ until v2.5
    orc = ["ORC", "NW", placer_ei, "", "", "", "", timing, "", authored, "", "", requester]
    segments.append("|".join(orc).rstrip("|"))
    if message_type == "OML" and version_tuple(lab.version) >= (2, 5):
        segments.append(f"TQ1|1||||||||{priority}")
    obr = ["OBR", "1", placer_ei, "", _coding(sr.get("code")), priority if version < (2, 5) else "",
           authored if version < (2, 7) else "", "", "", "", "", "", "", "", "", "", requester, "", "", "", "", "", "", "", "", "", "",
           timing]
    segments.append("|".join(obr).rstrip("|"))
    for i, note in enumerate(sr.get("note", []), start=1):
        if note.get("text"):
            segments.append(f"NTE|{i}||{_e(note['text'])}")
    return "\r".join(segments) + "\r"


def validate_structure(er7: str) -> None:
    """Check the message against hl7apy's structure for its version; OrderBuildError when it does not fit."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    try:
        parsed = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except TypeError:  # hl7apy's own structure data is incomplete for some versions (v2.7): it cannot judge
        log.warning("HL7 order: hl7apy cannot check a v%s order; sent unchecked", er7.split("|", 12)[11])
    except (HL7apyException, ValueError, KeyError) as exc:
        # hl7apy takes every alternative of ORM^O01's choice group (OBR | RQD | RQ1 | RXO | ODS | ODT) as
        # required; that one report is its limitation, not a fault of the message
        if not (er7.split("|", 9)[8].startswith("ORM") and "RQD" in str(exc)):
            raise OrderBuildError(f"the order does not fit the HL7 message structure: {exc}") from exc

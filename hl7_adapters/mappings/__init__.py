"""Inbound HL7 v2 mappings: one module per trigger event, each a pure function ``Message -> transaction Bundle``.

``map_message`` picks the module from MSH-9 (message type ^ trigger event) and checks MSH-12 (v2.3 to v2.8).  The
Bundle is plain JSON except that decimals are ``orjson.Fragment`` (so ``40.10`` keeps its digits): serialise it
with ``orjson.dumps`` or ``fhir_server.jsonio.dumps``.  Nothing here does I/O; the same message always gives the same
Bundle.  Field-level mapping tables and the patient matching rule are in ``docs/hl7v2.md`` ("Mappings").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hl7_adapters.mappings import (
    adt_a01,
    adt_a02,
    adt_a03,
    adt_a04,
    adt_a05,
    adt_a06,
    adt_a08,
    adt_a11,
    adt_a13,
    adt_a28,
    adt_a40,
    dft_p03,
    oml_o21,
    orm_o01,
    oru_r01,
    oul_r22,
    rde_o11,
    siu,
    vxu_v04,
)
from hl7_adapters.mappings._errors import MappingError, UnsupportedMessage
from hl7_adapters.v2.message import Message

Mapper = Callable[[Message], dict[str, Any]]

_REGISTRY: dict[tuple[str, str], Mapper] = {
    ("ADT", "A01"): adt_a01.to_bundle,
    ("ADT", "A02"): adt_a02.to_bundle,
    ("ADT", "A03"): adt_a03.to_bundle,
    ("ADT", "A04"): adt_a04.to_bundle,
    ("ADT", "A05"): adt_a05.to_bundle,
    ("ADT", "A06"): adt_a06.to_bundle,
    ("ADT", "A07"): adt_a06.to_bundle,
    ("ADT", "A08"): adt_a08.to_bundle,
    ("ADT", "A11"): adt_a11.to_bundle,
    ("ADT", "A13"): adt_a13.to_bundle,
    ("ADT", "A14"): adt_a05.to_bundle,
    ("ADT", "A28"): adt_a28.to_bundle,
    ("ADT", "A31"): adt_a28.to_bundle,
    ("ADT", "A40"): adt_a40.to_bundle,
    ("ORU", "R01"): oru_r01.to_bundle,
    ("OUL", "R22"): oul_r22.to_bundle,
    ("ORM", "O01"): orm_o01.to_bundle,
    ("OML", "O21"): oml_o21.to_bundle,
    **{("SIU", event): siu.to_bundle for event in siu.STATUS},
    ("DFT", "P03"): dft_p03.to_bundle,
    ("RDE", "O11"): rde_o11.to_bundle,
    ("VXU", "V04"): vxu_v04.to_bundle,
}

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2")


def supported() -> list[tuple[str, str]]:
    """The (message type, trigger event) pairs that are mapped."""
    return sorted(_REGISTRY)


def map_message(msg: Message) -> dict[str, Any]:
    """The transaction Bundle for ``msg``.

    Raises UnsupportedMessage (→ AR) for a type, trigger event or version that is not mapped, and MappingError
    (→ AE, naming segment and field) for a message whose content cannot be applied.
    """
    version = msg.version.strip()
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedMessage(f"HL7 version {version or '(none)'!r} (MSH-12) is not supported; this interface "
                                 f"accepts {', '.join(SUPPORTED_VERSIONS)}")
    key = (msg.message_type.strip().upper(), msg.trigger_event.strip().upper())
    mapper = _REGISTRY.get(key)
    if mapper is None:
        accepted = ", ".join(f"{t}^{e}" for t, e in supported())
        what = f"{key[0]}^{key[1]}" if key[1] else key[0] or "(none)"
        raise UnsupportedMessage(f"message type {what} (MSH-9) is not supported; this interface accepts {accepted}")
    return mapper(msg)


__all__ = ["MappingError", "UnsupportedMessage", "map_message", "supported"]

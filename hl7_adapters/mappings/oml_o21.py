"""OML^O21 (laboratory order) → ServiceRequest (category laboratory procedure) per ORC/OBR group with its
Specimens (see ``_requests``)."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._requests import orders_bundle
from hl7_adapters.v2.message import Message


def to_bundle(msg: Message) -> dict[str, Any]:
    return orders_bundle(msg, lab=True)

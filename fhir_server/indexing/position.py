"""``Location.near``: the position of a Location, stored as a two-component entry (latitude, longitude).

R4 defines ``near`` as a special parameter with no expression; this module is its extraction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.indexing.entries import CompositeEntry, NumberEntry

NEAR = "near"


def position_entry(resource: dict[str, Any]) -> CompositeEntry | None:
    if resource.get("resourceType") != "Location":
        return None
    position = resource.get("position")
    if not isinstance(position, dict):
        return None
    lat, lon = position.get("latitude"), position.get("longitude")
    if not isinstance(lat, int | Decimal) or not isinstance(lon, int | Decimal):
        return None
    flat, flon = float(lat), float(lon)
    return CompositeEntry(NEAR, ((NumberEntry(NEAR, flat, flat, flat),), (NumberEntry(NEAR, flon, flon, flon),)))

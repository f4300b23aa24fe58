"""Opaque keyset-paging cursors, the same for every backend: the sort key values of a page's edge and the
direction, as URL-safe base64 JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

from fhir_server.errors import InvalidRequest


def encode_cursor(values: list[Any], forward: bool) -> str:
    raw = json.dumps({"v": values, "f": forward}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[list[Any], bool]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values, forward = data["v"], data["f"]
        if not isinstance(values, list) or not isinstance(forward, bool):
            raise ValueError
        return values, forward
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest("_cursor is not a cursor this server issued", expression="_cursor") from exc

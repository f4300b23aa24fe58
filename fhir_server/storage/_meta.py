"""Helpers every backend shares: instants and the server-managed ``meta`` elements."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def format_instant(epoch_seconds: float) -> str:
    """Fixed-width UTC instant with microseconds, so instants sort correctly as text."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_of(instant: str) -> float:
    """A fixed-width UTC instant written by :func:`format_instant` → epoch seconds."""
    return datetime.strptime(instant, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class MonotonicClock:
    """Wall-clock instants that never go backwards within one writer."""

    def __init__(self) -> None:
        self._last = 0.0

    def now_with_epoch(self) -> tuple[str, float]:
        """The instant as text and the same instant in epoch seconds (rounded to the microsecond)."""
        current = round(time.time(), 6)
        if current <= self._last:
            current = round(self._last + 1e-6, 6)
        self._last = current
        return format_instant(current), current


def with_meta(resource: dict[str, Any], version: int, last_updated: str) -> dict[str, Any]:
    """A copy of the resource with ``meta.versionId``/``meta.lastUpdated`` set, ``meta`` placed after ``id``."""
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    new_meta = {"versionId": str(version), "lastUpdated": last_updated, **meta}
    out: dict[str, Any] = {}
    for key in ("resourceType", "id"):
        if key in resource:
            out[key] = resource[key]
    out["meta"] = new_meta
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out

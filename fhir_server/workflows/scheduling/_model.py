"""The FHIR shapes scheduling writes: Schedules, generated Slots, holds and Appointments."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fhir_server.indexing._norm_date import date_interval

CODES = "https://infirmary.example.org/fhir/CodeSystem/scheduling"
HOLD_URL = "https://infirmary.example.org/fhir/StructureDefinition/slot-hold"
GENERATED = {"system": CODES, "code": "generated", "display": "made from PractitionerRole availability"}
WITHDRAWN = {"system": CODES, "code": "withdrawn", "display": "no longer in the practitioner's availability"}
HOLD_EXPIRED = {"system": CODES, "code": "hold-expired", "display": "the hold lapsed before it was booked"}


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: Any) -> float | None:
    interval = date_interval(value)
    return None if interval is None else interval[0]


def slot_id(schedule_id: str, start: datetime) -> str:
    """Deterministic: regenerating finds the slot it made before (ids are at most 64 characters)."""
    stamp = start.astimezone(UTC).strftime("%Y%m%d%H%M")
    head = schedule_id if len(schedule_id) <= 50 else hashlib.sha256(schedule_id.encode()).hexdigest()[:40]
    return f"{head}-{stamp}"


def tags(resource: Mapping[str, Any]) -> set[str]:
    return {t.get("code") for t in resource.get("meta", {}).get("tag", ()) if t.get("system") == CODES}


def with_tags(resource: dict[str, Any], *codes: Mapping[str, str]) -> dict[str, Any]:
    """The resource without ``meta`` (the store sets versionId/lastUpdated) and with exactly these of our tags."""
    meta = dict(resource.get("meta", {}))
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    others = [t for t in meta.get("tag", ()) if t.get("system") != CODES]
    meta["tag"] = [*others, *(dict(c) for c in codes)]
    if not meta["tag"]:
        del meta["tag"]
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out = {"resourceType": out["resourceType"], "id": out["id"], "meta": meta,
               **{k: v for k, v in out.items() if k not in ("resourceType", "id")}}
    return out


def ref(rtype: str, id: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": f"{rtype}/{id}"}
    if display:
        out["display"] = display
    return out


# -- holds --------------------------------------------------------------------------------------------------------


def hold_of(slot: Mapping[str, Any]) -> tuple[str, float] | None:
    """The held Appointment's id and the hold's expiry (epoch seconds), when the slot carries a hold."""
    for ext in slot.get("extension", ()):
        if ext.get("url") != HOLD_URL:
            continue
        parts = {e.get("url"): e for e in ext.get("extension", ())}
        reference = parts.get("appointment", {}).get("valueReference", {}).get("reference", "")
        expires = epoch(parts.get("expires", {}).get("valueInstant"))
        if reference.startswith("Appointment/") and expires is not None:
            return reference.split("/", 1)[1], expires
    return None


def without_hold(slot: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(slot)
    kept = [e for e in slot.get("extension", ()) if e.get("url") != HOLD_URL]
    if kept:
        out["extension"] = kept
    else:
        out.pop("extension", None)
    return out


def with_hold(slot: Mapping[str, Any], appointment_id: str, expires: datetime) -> dict[str, Any]:
    out = without_hold(slot)
    hold = {"url": HOLD_URL, "extension": [
        {"url": "appointment", "valueReference": {"reference": f"Appointment/{appointment_id}"}},
        {"url": "expires", "valueInstant": instant(expires)},
    ]}
    return _ordered({**out, "extension": [*out.get("extension", []), hold]})


_SLOT_ORDER = ("resourceType", "id", "meta", "extension", "identifier", "serviceCategory", "serviceType",
               "specialty", "appointmentType", "schedule", "status", "start", "end", "overbooked", "comment")


def _ordered(slot: dict[str, Any]) -> dict[str, Any]:
    return {k: slot[k] for k in sorted(slot, key=lambda k: _SLOT_ORDER.index(k) if k in _SLOT_ORDER else 99)}


def slot_state(slot: Mapping[str, Any], status: str) -> dict[str, Any]:
    """The slot with a new status (a hold is dropped unless the new status is busy-tentative)."""
    out = dict(slot) if status == "busy-tentative" else without_hold(slot)
    out["status"] = status
    return _ordered(out)

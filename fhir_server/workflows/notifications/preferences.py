"""Who gets what, where, in which language — the rule (also in docs/notifications.md):

* A recipient (Patient or Practitioner) with the extension ``notification-opt-out`` = true on the resource gets
  nothing at all: no email, no SMS, no in-app message.
* A contact point (``telecom``) is usable when its ``system`` is ``email`` or ``sms`` (or ``phone`` with
  ``use = mobile``, treated as SMS), it has a ``value``, its ``period.end`` is not in the past, its
  ``period.start`` not in the future, and it does not carry ``notification-opt-out`` = true.
* Per channel (email, SMS) the usable contact point with the lowest ``rank`` is used (no rank: after ranked
  ones, in document order); a channel is only offered when the server has it configured (``FHIR_NOTIFY__*``).
* Patients always also get the in-app message (the portal inbox), unless opted out; practitioners get in-app
  messages too (the clinician workspace).
* Language: the ``Patient.communication`` marked ``preferred``, else the first one, else
  ``FHIR_NOTIFY__DEFAULT_LANGUAGE``; a regional code (es-MX) falls back to its language (es).
* Appointment reminder offsets: the Patient's ``reminder-offsets`` extension (valueString, e.g. "48h,1h"; "" for
  no reminders) overrides ``FHIR_NOTIFY__REMINDER_OFFSETS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.workflows.notifications._codes import (
    EMAIL,
    IN_APP,
    OPT_OUT,
    REMINDER_OFFSETS,
    SMS,
    flag,
    string_extension,
)

_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Route:
    channel: str
    address: str | None  # None for in-app


def opted_out(recipient: dict[str, Any]) -> bool:
    return flag(recipient, OPT_OUT)


def routes(recipient: dict[str, Any], now: float, available: set[str]) -> list[Route]:
    """The channels (and addresses) this recipient gets messages on, in order: email, SMS, in-app."""
    if opted_out(recipient):
        return []
    best: dict[str, tuple[int, int, str]] = {}
    for position, point in enumerate(recipient.get("telecom") or ()):
        channel = _channel(point)
        if channel is None or channel not in available or not _usable(point, now):
            continue
        rank = point.get("rank")
        order = (int(rank) if isinstance(rank, int) else 2**31, position, str(point["value"]))
        if channel not in best or order < best[channel]:
            best[channel] = order
    found = [Route(channel, best[channel][2]) for channel in (EMAIL, SMS) if channel in best]
    if IN_APP in available:
        found.append(Route(IN_APP, None))
    return found


def address(recipient: dict[str, Any], channel: str, now: float) -> str | None:
    """The address for ``channel`` now (None: opted out or no usable contact point any more)."""
    for route in routes(recipient, now, {channel}):
        if route.channel == channel:
            return route.address
    return None


def _channel(point: dict[str, Any]) -> str | None:
    system = point.get("system")
    if system == "email":
        return EMAIL
    if system == "sms" or (system == "phone" and point.get("use") == "mobile"):
        return SMS
    return None


def _usable(point: dict[str, Any], now: float) -> bool:
    if not isinstance(point.get("value"), str) or not point["value"].strip() or flag(point, OPT_OUT):
        return False
    period = point.get("period") or {}
    end, start = period.get("end"), period.get("start")
    if end is not None and _epoch(end, end_of_day=True) < now:
        return False
    return not (start is not None and _epoch(start, end_of_day=False) > now)


def _epoch(value: str, end_of_day: bool) -> float:
    """A FHIR dateTime (any precision) → epoch seconds; a partial date counts to its end (or start)."""
    text = value.strip()
    if len(text) == 4:
        text += "-12-31" if end_of_day else "-01-01"
    elif len(text) == 7:
        text += "-28" if end_of_day else "-01"
    if len(text) == 10:
        text += "T23:59:59+00:00" if end_of_day else "T00:00:00+00:00"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def language(recipient: dict[str, Any], supported: set[str], default: str) -> str:
    communications = [c for c in recipient.get("communication") or () if isinstance(c, dict)]
    ordered = [c for c in communications if c.get("preferred") is True] + communications
    for entry in ordered:
        for coding in (entry.get("language") or {}).get("coding") or ():
            code = str(coding.get("code") or "").lower()
            for candidate in (code, code.split("-")[0]):
                if candidate in supported:
                    return candidate
    return default


def parse_offsets(text: str) -> list[float]:
    """``"24h,2h"`` → [86400, 7200] seconds; ``ValueError`` naming the bad part."""
    offsets: list[float] = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _OFFSET.match(part)
        if match is None:
            raise ValueError(f"a reminder offset is a number and a unit s, m, h, d or w (like 24h), not {part!r}")
        offsets.append(float(match.group(1)) * _UNIT_S[match.group(2)])
    return sorted(set(offsets), reverse=True)


def reminder_offsets(patient: dict[str, Any] | None, default: str) -> list[float]:
    own = string_extension(patient, REMINDER_OFFSETS) if patient else None
    if own is not None:
        try:
            return parse_offsets(own)
        except ValueError:
            pass  # a bad value on the Patient falls back to the hospital's offsets
    return parse_offsets(default)

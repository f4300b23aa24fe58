"""Systems, codes and extensions of notifications (extensions defined in profiles/notifications/)."""

from __future__ import annotations

from typing import Any

BASE = "https://infirmary.example.org/fhir"
KIND_SYSTEM = f"{BASE}/CodeSystem/notification"
CHANNEL_SYSTEM = f"{BASE}/CodeSystem/notification-channel"
IDENTIFIER_SYSTEM = f"{BASE}/sid/notification"
OPT_OUT = f"{BASE}/StructureDefinition/notification-opt-out"
REMINDER_OFFSETS = f"{BASE}/StructureDefinition/reminder-offsets"

BOOKED = "appointment-booked"
RESCHEDULED = "appointment-rescheduled"
CANCELLED = "appointment-cancelled"
APPOINTMENT_REMINDER = "appointment-reminder"
FOLLOW_UP_REMINDER = "follow-up-reminder"
MEDICATION_REMINDER = "medication-reminder"
KINDS = (BOOKED, RESCHEDULED, CANCELLED, APPOINTMENT_REMINDER, FOLLOW_UP_REMINDER, MEDICATION_REMINDER)

EMAIL, SMS, IN_APP = "email", "sms", "in-app"
CHANNELS = (EMAIL, SMS, IN_APP)


def category(kind: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": KIND_SYSTEM, "code": kind}]}]


def kind_of(resource: dict[str, Any]) -> str | None:
    for concept in resource.get("category") or ():
        for coding in concept.get("coding") or ():
            if coding.get("system") == KIND_SYSTEM:
                return str(coding.get("code"))
    return None


def medium(channel: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CHANNEL_SYSTEM, "code": channel}], "text": channel}]


def channel_of(resource: dict[str, Any]) -> str | None:
    for concept in resource.get("medium") or ():
        for coding in concept.get("coding") or ():
            if coding.get("system") == CHANNEL_SYSTEM:
                return str(coding.get("code"))
    return None


def flag(element: dict[str, Any], url: str) -> bool:
    return any(ext.get("url") == url and ext.get("valueBoolean") is True for ext in element.get("extension") or ())


def string_extension(element: dict[str, Any], url: str) -> str | None:
    for ext in element.get("extension") or ():
        if ext.get("url") == url and isinstance(ext.get("valueString"), str):
            return str(ext["valueString"])
    return None

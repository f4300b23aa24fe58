"""Operation parameters: a ``Parameters`` body (POST) or a query string (GET), read by name and type.

Every problem is a 400 whose ``expression`` is the parameter's name, so a client knows what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.indexing._norm_date import date_interval
from fhir_server.services._body import parse_resource

_IGNORED = frozenset({"_format", "_pretty"})


class OpParams:
    """The parameters of one call: name → its parts (a part is the JSON of ``Parameters.parameter``)."""

    def __init__(self, operation: str, parts: Iterable[tuple[str, dict[str, Any]]], known: Sequence[str]) -> None:
        self.operation = operation
        self.parts: dict[str, list[dict[str, Any]]] = {}
        for name, part in parts:
            if name in _IGNORED:
                continue
            if name not in known:
                raise InvalidRequest(f"${operation} has no parameter {name!r} (it takes {', '.join(known)})",
                                     expression=name)
            self.parts.setdefault(name, []).append(part)

    @classmethod
    def from_body(cls, operation: str, body: bytes, known: Sequence[str]) -> OpParams:
        if not body.strip():
            return cls(operation, (), known)
        resource = parse_resource(body)
        if resource.get("resourceType") != "Parameters":
            raise InvalidRequest(f"the body of ${operation} must be a Parameters resource", expression="resourceType")
        parts = []
        for i, part in enumerate(resource.get("parameter") or []):
            name = part.get("name") if isinstance(part, dict) else None
            if not isinstance(name, str):
                raise InvalidRequest("a parameter has no name", expression=f"Parameters.parameter[{i}].name")
            parts.append((name, part))
        return cls(operation, parts, known)

    @classmethod
    def from_query(cls, operation: str, items: Iterable[tuple[str, str]], known: Sequence[str]) -> OpParams:
        return cls(operation, ((k, {"name": k, "valueString": v}) for k, v in items), known)

    # -- typed access ---------------------------------------------------------------------------------------

    def _one(self, name: str, required: bool) -> dict[str, Any] | None:
        parts = self.parts.get(name, [])
        if len(parts) > 1:
            raise InvalidRequest(f"${self.operation}: {name} may be given once", expression=name)
        if not parts:
            if required:
                raise InvalidRequest(f"${self.operation} needs the parameter {name}", expression=name)
            return None
        return parts[0]

    def has(self, name: str) -> bool:
        return name in self.parts

    def text(self, name: str, required: bool = False) -> str | None:
        part = self._one(name, required)
        if part is None:
            return None
        for key, value in part.items():
            if key.startswith("value") and isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        raise InvalidRequest(f"{name} needs a primitive value", expression=name)

    def texts(self, name: str) -> list[str]:
        """Every value of a repeatable search-like parameter (commas separate alternatives)."""
        out: list[str] = []
        for part in self.parts.get(name, []):
            value = _as_text(part)
            if value is None:
                raise InvalidRequest(f"{name} needs a string, code, Coding or Reference value", expression=name)
            out.extend(v for v in value.split(",") if v)
        return out

    def as_query(self, leave_out: Sequence[str] = ()) -> list[tuple[str, str]]:
        """The parameters as query-string pairs (for the links of a result)."""
        return [(name, text) for name, parts in self.parts.items() if name not in leave_out for part in parts
                if (text := _as_text(part)) is not None]

    def reference(self, name: str, rtype: str, required: bool = False) -> str | None:
        """The id of a ``Type/id`` reference (``valueReference`` or a string) to ``rtype``."""
        part = self._one(name, required)
        if part is None:
            return None
        value = part.get("valueReference", {}).get("reference") if "valueReference" in part else \
            next((v for k, v in part.items() if k.startswith("value") and isinstance(v, str)), None)
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a reference to a {rtype}", expression=name)
        return reference_id(value, rtype, name)

    def resource(self, name: str, rtype: str) -> dict[str, Any] | None:
        part = self._one(name, False)
        if part is None:
            return None
        resource = part.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            raise InvalidRequest(f"{name} must be a {rtype} resource", expression=name)
        return resource

    def instant(self, name: str) -> datetime | None:
        """A date, dateTime or instant; a date or a partial one means its start."""
        raw = self.text(name)
        if raw is None:
            return None
        interval = date_interval(raw)
        if interval is None:
            raise InvalidRequest(f"{name} {raw!r} is not a FHIR date or dateTime", expression=name)
        return datetime.fromtimestamp(interval[0], UTC)

    def integer(self, name: str, low: int, high: int) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise InvalidRequest(f"{name} must be a whole number from {low} to {high}", expression=name)
        return int(raw)

    def concept(self, name: str, required: bool = False) -> dict[str, Any] | None:
        """A CodeableConcept (``valueCodeableConcept``, ``valueCoding`` or plain text)."""
        part = self._one(name, required)
        if part is None:
            return None
        if isinstance(part.get("valueCodeableConcept"), dict):
            return dict(part["valueCodeableConcept"])
        if isinstance(part.get("valueCoding"), dict):
            return {"coding": [part["valueCoding"]]}
        text = self.text(name)
        if not text or not text.strip():
            raise InvalidRequest(f"{name} must not be empty", expression=name)
        return {"text": text}


def reference_id(value: str, rtype: str, name: str) -> str:
    """``Type/id`` (absolute or relative) → id, when Type is ``rtype``."""
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != rtype or not parts[-1]:
        raise InvalidRequest(f"{name} {value!r} is not a reference to a {rtype}", expression=name)
    return parts[-1]


def _as_text(part: dict[str, Any]) -> str | None:
    if isinstance(part.get("valueReference"), dict):
        reference = part["valueReference"].get("reference")
        return reference if isinstance(reference, str) else None
    coding = part.get("valueCoding")
    if isinstance(part.get("valueCodeableConcept"), dict):
        coding = (part["valueCodeableConcept"].get("coding") or [None])[0]
    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
        return f"{coding['system']}|{coding['code']}" if isinstance(coding.get("system"), str) else coding["code"]
    for key, value in part.items():
        if key.startswith("value") and isinstance(value, str):
            return value
    return None

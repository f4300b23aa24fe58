"""Reading a FHIRPath Patch ``Parameters`` resource into operations, or refusing it as malformed (400).

Every ``parameter`` must be named ``operation`` and carry ``part``s named ``type`` (valueCode: add | insert |
delete | replace | move), ``path`` (valueString), ``name`` (valueString), ``value`` (see ``_fhirpath_values``),
``index``, ``source``, ``destination`` (valueInteger >= 0).  Each type needs its parts (add: path, name, value;
insert: path, value, index; delete: path; replace: path, value; move: path, source, destination); a part the type
does not use is ignored, an unknown or repeated part name is an error.  Error expressions point into the
Parameters resource: ``Parameters.parameter[2]`` for the operation, ``Parameters.parameter[2].part[1]`` for one
part.  An empty ``Parameters`` (no ``parameter``) is a valid patch that changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.services._fhirpath_path import Step, parse_path
from fhir_server.services._fhirpath_values import PatchValue, parse_value

__all__ = ["Operation", "parse_parameters"]

_REQUIRED = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_PART_NAMES = frozenset({"type", "path", "name", "value", "index", "source", "destination"})


@dataclass(frozen=True)
class Operation:
    """One parsed patch operation; ``where`` names it (``Parameters.parameter[i]``)."""

    type: str
    path: tuple[Step, ...]
    path_text: str
    path_where: str  # the expression naming the path part
    where: str
    name: str | None = None
    value: PatchValue | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def parse_parameters(parameters: Any) -> list[Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest("a FHIRPath Patch body must be a Parameters resource", expression="Parameters")
    items = parameters.get("parameter", [])
    if not isinstance(items, list):
        raise InvalidRequest("Parameters.parameter must be an array", expression="Parameters.parameter")
    return [_parse_operation(item, f"Parameters.parameter[{number}]") for number, item in enumerate(items)]


def _parse_operation(item: Any, where: str) -> Operation:
    if not isinstance(item, dict) or item.get("name") != "operation":
        raise InvalidRequest("each parameter of a FHIRPath Patch must be named 'operation'", expression=where)
    parts = _index_parts(item.get("part"), where)
    kind = _string(parts, "type", "valueCode", where)
    if kind not in _REQUIRED:
        raise InvalidRequest(f"unknown FHIRPath Patch operation type {kind!r}", expression=parts["type"][1])
    for required in _REQUIRED[kind]:
        if required not in parts:
            raise InvalidRequest(f"a {kind} operation needs a '{required}' part", expression=where)
    path_text = _string(parts, "path", "valueString", where)
    return Operation(
        type=kind,
        path=parse_path(path_text, parts["path"][1]),
        path_text=path_text,
        path_where=parts["path"][1],
        where=where,
        name=_string(parts, "name", "valueString", where) if kind == "add" else None,
        value=parse_value(parts["value"][0], parts["value"][1]) if "value" in _REQUIRED[kind] else None,
        index=_integer(parts, "index", where) if kind == "insert" else None,
        source=_integer(parts, "source", where) if kind == "move" else None,
        destination=_integer(parts, "destination", where) if kind == "move" else None,
    )


def _index_parts(parts: Any, where: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Each part by name, with the expression that names it."""
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("an operation needs its parts", expression=where)
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for number, part in enumerate(parts):
        part_where = f"{where}.part[{number}]"
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PART_NAMES:
            raise InvalidRequest(f"unknown operation part {name!r}", expression=part_where)
        if name in found:
            raise InvalidRequest(f"the operation has more than one '{name}' part", expression=part_where)
        assert isinstance(part, dict) and isinstance(name, str)
        found[name] = (part, part_where)
    return found


def _string(parts: dict[str, tuple[dict[str, Any], str]], name: str, key: str, where: str) -> str:
    value, part_where = _member(parts, name, key, where)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"the '{name}' part needs a non-empty {key}", expression=part_where)
    return value


def _integer(parts: dict[str, tuple[dict[str, Any], str]], name: str, where: str) -> int:
    value, part_where = _member(parts, name, "valueInteger", where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(f"the '{name}' part needs a non-negative valueInteger", expression=part_where)
    return value


def _member(parts: dict[str, tuple[dict[str, Any], str]], name: str, key: str, where: str) -> tuple[Any, str]:
    if name not in parts:
        raise InvalidRequest(f"the operation needs a '{name}' part", expression=where)
    part, part_where = parts[name]
    return part.get(key), part_where

"""Values carried by FHIRPath Patch ``value`` parts, and how they become resource JSON.

A ``value`` part holds either

* a typed value: one ``valueXxx`` member (kept exactly as parsed, so a ``valueDecimal`` of ``72.50`` stays a
  ``FhirDecimal('72.50')``), optionally with its ``_valueXxx`` primitive extension object, or a ``resource``
  member (a whole resource, e.g. for ``contained``); or
* nested ``part``s for a complex value (``Patient.contact``, ``Observation.component``, ``Timing.repeat``): each
  part's ``name`` is an element name and its content is again a typed value or further parts.

Turning parts into JSON needs the element definitions:

* a part whose element is a choice (``Observation.component.value``) takes its JSON name from the typed value
  (``valueQuantity``); a new choice value built from nested parts has no type and is refused (400), while
  replacing an existing ``valueQuantity`` with parts keeps its type;
* parts with the same name always make an array; a single part makes an array only when
  ``is_repeating(path)`` answers True for its element (``path`` as in the R4 StructureDefinition, e.g.
  ``Patient.contact.telecom``, ``HumanName.given``, ``Observation.value[x]``).  Without a callback, or when it
  answers None (an element R4 does not define), a single part becomes a single value: JSON alone cannot tell
  ``1..*`` from ``0..1``, and the caller's validation flags the element if it should have been an array;
* a primitive part with ``_valueXxx`` extensions gets a ``_name`` sibling, aligned with the values when they form
  an array;
* a typed value whose type plainly disagrees with the element's declared type (a ``valueString`` for a
  ``HumanName``, a ``valueCodeableConcept`` for a ``Quantity``) is refused (422).  Primitive types are not checked
  against each other here: the caller's validator checks the JSON form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import InvalidRequest, ValidationFailed
from fhir_server.services._fhirpath_model import (
    child_element,
    choice_types,
    definition_path,
    is_choice,
    is_primitive_type,
    scope_of,
    type_from_suffix,
    type_matches,
)
from fhir_server.services._patch_common import clone

__all__ = ["Built", "IsRepeating", "PartsValue", "PatchValue", "TypedValue", "build", "parse_value"]

IsRepeating = Callable[[str], bool | None]


@dataclass(frozen=True)
class TypedValue:
    suffix: str | None  # the Xxx of valueXxx; None for a ``resource``
    value: Any  # None when only ``_valueXxx`` was given
    extension: dict[str, Any] | None
    where: str


@dataclass(frozen=True)
class PartsValue:
    parts: tuple[tuple[str, PatchValue], ...]
    where: str


PatchValue = TypedValue | PartsValue


@dataclass(frozen=True)
class Built:
    """A value ready to be stored: its JSON, its primitive ``_x`` object and its choice suffix."""

    value: Any
    extension: dict[str, Any] | None
    suffix: str | None


# -- parsing -------------------------------------------------------------------------------------------------


def parse_value(part: dict[str, Any], where: str) -> PatchValue:
    """Read the content of a ``value`` part (or of a nested part) found at ``where``."""
    typed = [key for key in part if _is_value_key(key.removeprefix("_")) or key == "resource"]
    nested = part.get("part")
    if typed and nested is not None:
        raise InvalidRequest("a value part has both a value[x] and nested parts", expression=where)
    if nested is not None:
        return _parse_parts(nested, where)
    suffixes = {key.removeprefix("_").removeprefix("value") for key in typed}
    if len(suffixes) != 1:
        detail = "no value[x], resource or nested parts" if not typed else f"several values {sorted(typed)}"
        raise InvalidRequest(f"a value part needs exactly one value: found {detail}", expression=where)
    if "resource" in part:
        return _resource_value(part["resource"], where)
    suffix = suffixes.pop()
    extension = part.get(f"_value{suffix}")
    if extension is not None and not isinstance(extension, dict):
        raise InvalidRequest(f"_value{suffix} must be an object", expression=where)
    return TypedValue(suffix, part.get(f"value{suffix}"), extension, where)


def _is_value_key(key: str) -> bool:
    return key.startswith("value") and key[5:6].isupper()


def _resource_value(resource: Any, where: str) -> TypedValue:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InvalidRequest("a value part's resource must be a resource object", expression=where)
    return TypedValue(None, resource, None, where)


def _parse_parts(nested: Any, where: str) -> PartsValue:
    if not isinstance(nested, list) or not nested:
        raise InvalidRequest("a value part's 'part' must be a non-empty array", expression=where)
    parts: list[tuple[str, PatchValue]] = []
    for number, item in enumerate(nested):
        item_where = f"{where}.part[{number}]"
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("each nested part needs a name (the element name)", expression=item_where)
        assert isinstance(item, dict)
        parts.append((name, parse_value(item, item_where)))
    return PartsValue(tuple(parts), where)


# -- building ------------------------------------------------------------------------------------------------


def build(value: PatchValue, element: str, scope: str | None, is_repeating: IsRepeating | None) -> Built:
    """The JSON for ``value`` stored in ``element``; ``scope`` is the type its children are defined by."""
    if isinstance(value, TypedValue):
        check_type(value, element)
        return Built(clone(value.value), clone(value.extension), value.suffix)
    if is_choice(element) and scope is None:
        raise InvalidRequest(
            f"{definition_path(element)} is a choice element: give a typed value[x], not nested parts",
            expression=value.where,
        )
    return Built(_build_object(value, element, scope, is_repeating), None, None)


def check_type(value: TypedValue, element: str) -> None:
    """Refuse a typed value that does not fit the element (wrong choice type, complex/primitive mismatch)."""
    actual = type_from_suffix(value.suffix) if value.suffix else None
    if is_choice(element):
        if value.suffix not in choice_types(element):
            raise ValidationFailed(
                f"{definition_path(element)} cannot hold a value of type {value.suffix or 'Resource'}",
                expression=value.where,
            )
        return
    declared = scope_of(element)
    if actual is None or declared is None or "." in declared:
        return
    if is_primitive_type(actual) and is_primitive_type(declared):
        return
    if not (type_matches(actual, declared) or type_matches(declared, actual)):
        raise ValidationFailed(f"{element} is a {declared}, not a {actual}", expression=value.where)


def _build_object(
    value: PartsValue, element: str, scope: str | None, is_repeating: IsRepeating | None
) -> dict[str, Any]:
    groups: dict[str, list[PatchValue]] = {}
    for name, item in value.parts:
        groups.setdefault(name, []).append(item)
    result: dict[str, Any] = {}
    for name, items in groups.items():
        child = child_element(scope, name) or f"{element}.{name}"
        built = [build(item, child, scope_of(child, _raw(item)), is_repeating) for item in items]
        key = _json_name(name, child, built, items[0].where)
        repeating = len(built) > 1 or (
            is_repeating is not None and is_repeating(definition_path(child)) is True
        )
        _store(result, key, built, repeating)
    return result


def _raw(item: PatchValue) -> Any:
    return item.value if isinstance(item, TypedValue) else None


def _json_name(name: str, element: str, built: list[Built], where: str) -> str:
    if not is_choice(element):
        return name
    suffixes = {item.suffix for item in built}
    if len(suffixes) != 1:
        raise InvalidRequest(f"parts named {name!r} have different types", expression=where)
    return f"{name}{suffixes.pop()}"


def _store(target: dict[str, Any], key: str, built: list[Built], repeating: bool) -> None:
    extensions = [item.extension for item in built]
    if repeating:
        target[key] = [item.value for item in built]
        if any(extension is not None for extension in extensions):
            target[f"_{key}"] = extensions
        return
    if built[0].value is not None:
        target[key] = built[0].value
    if extensions[0] is not None:
        target[f"_{key}"] = extensions[0]

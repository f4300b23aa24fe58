"""What FHIRPath Patch needs to know about R4 element definitions, read from fhirpathpy's bundled R4 model.

The model (``fhirpathpy.models['r4']``) maps element paths to types (``HumanName.given`` -> ``string``,
``Patient.contact.name`` -> ``HumanName``), lists choice elements with their allowed types (``Observation.value``
-> ``Quantity``, ``String``, ...), content references (``Questionnaire.item.item`` -> ``Questionnaire.item``) and
type inheritance (``Age`` -> ``Quantity`` -> ``Element``).  It has no cardinalities: :func:`r4_is_repeating`, the
default ``is_repeating`` callback, answers from the server's generated R4 definitions (``fhir_server.definitions``).

Vocabulary used here:

* an *element path* is the path of the defining element, as in an R4 StructureDefinition but without the
  ``[x]`` suffix: ``Patient.contact``, ``HumanName.given``, ``Observation.value``;
* a *type scope* is where the children of a value are defined: a type name (``HumanName``, ``Patient``,
  ``string``) or, for backbone elements, their element path (``Patient.contact``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from fhirpathpy.models import models

from fhir_server.definitions import load_definitions

__all__ = [
    "child_element",
    "choice_types",
    "definition_path",
    "is_choice",
    "is_primitive_type",
    "r4_is_repeating",
    "scope_of",
    "type_from_suffix",
    "type_matches",
]

_R4: dict[str, Any] = cast(dict[str, Any], models["r4"])
_PATH_TYPE: dict[str, str] = _R4["path2Type"]
_CHOICES: dict[str, list[str]] = _R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _R4["pathsDefinedElsewhere"]
_PARENT: dict[str, str | None] = _R4["type2Parent"]
_BACKBONES: frozenset[str] = frozenset(
    path.rsplit(".", 1)[0] for path in (*_PATH_TYPE, *_CHOICES) if path.count(".") > 1
)


def child_element(scope: str | None, name: str) -> str | None:
    """The element path of child ``name`` of a value whose type scope is ``scope``, or None when unknown."""
    current = scope
    while current:
        candidate = f"{current}.{name}"
        candidate = _ELSEWHERE.get(candidate, candidate)
        if candidate in _PATH_TYPE or candidate in _CHOICES or candidate in _BACKBONES:
            return candidate
        current = _PARENT.get(current)
    return None


def is_choice(element: str | None) -> bool:
    return element is not None and element in _CHOICES


def choice_types(element: str) -> list[str]:
    """The allowed type suffixes of a choice element, as they appear in JSON names (``Quantity``, ``DateTime``)."""
    return list(_CHOICES.get(element, []))


def definition_path(element: str) -> str:
    """The StructureDefinition spelling of an element path: choice elements end in ``[x]``."""
    return f"{element}[x]" if element in _CHOICES else element


def scope_of(element: str | None, value: Any = None) -> str | None:
    """The type scope of a value held by ``element`` (a contained resource is scoped by its resourceType)."""
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return cast(str, value["resourceType"])
    if element is None:
        return None
    if element in _BACKBONES and element not in _PATH_TYPE:
        return element
    declared = _PATH_TYPE.get(element)
    return "string" if declared == "System.String" else declared


def type_from_suffix(suffix: str) -> str | None:
    """The type named by a choice suffix: ``Quantity`` -> ``Quantity``, ``DateTime`` -> ``dateTime``."""
    if suffix in _PARENT:
        return suffix
    primitive = suffix[:1].lower() + suffix[1:]
    return primitive if primitive in _PARENT else None


def is_primitive_type(scope: str | None) -> bool:
    return scope is not None and "." not in scope and scope[:1].islower()


def type_matches(scope: str | None, wanted: str) -> bool:
    """Whether a value of type ``scope`` is of type ``wanted`` or a specialisation of it (for ``ofType``)."""
    wanted = wanted.removeprefix("FHIR.")
    return any(_is_a(scope, name) for name in {wanted, wanted[:1].lower() + wanted[1:]})


@cache
def _is_a(scope: str | None, wanted: str) -> bool:
    current = scope
    while current:
        if current == wanted:
            return True
        current = _PARENT.get(current)
    return False


def r4_is_repeating(path: str) -> bool | None:
    """Whether the base R4 element at ``path`` (``Patient.contact``, ``Observation.value[x]``) repeats."""
    return _r4_cardinalities().get(path)


@cache
def _r4_cardinalities() -> dict[str, bool]:
    table: dict[str, bool] = {}
    for definition in load_definitions().types.values():
        for node in (definition.node, *definition.paths.values()):
            for rule in node.elements.values():
                table[rule.path] = rule.is_array
    return table

"""The compact FHIR R4 (4.0.1) definitions the server runs on, loaded from the generated ``*.json.gz`` files.

The data files beside this module are produced by ``scripts/generate_definitions.py`` from the official core
package and committed; this module (hand-written) turns them into lookup structures once per process::

    defs = load_definitions()
    rule = defs.type("Observation").node.elements["valueQuantity"]   # an ElementRule
    rule.node.elements["value"].type_code                              # "decimal"

Every element node maps *JSON property names* to an :class:`ElementRule`; a choice element such as
``Observation.value[x]`` appears once per allowed type (``valueQuantity``, ``valueString``, ...).  A rule's
``node`` is the node of its children, whatever defines them: inline BackboneElement children from the resource's
own snapshot, the target of a ``contentReference`` (``Questionnaire.item.item`` -> ``Questionnaire.item``), or the
shared root node of a complex data type.  Primitive types and ``Resource``-typed elements have no node.

Deviation from the snapshots: the snapshot gives ``Resource.id`` the FHIRPath type ``System.String`` (fhir-type
``string``), while the specification defines it as ``id``; the loader types a resource root's ``id`` as ``id`` so
that resource ids are checked against ``[A-Za-z0-9\\-\\.]{1,64}``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "Definitions",
    "ElementRule",
    "Mandatory",
    "Node",
    "TypeDefinition",
    "ValueSet",
    "load_definitions",
]

DATA_DIR = Path(__file__).resolve().parent
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ValueSet:
    """The expansion of a value set, or a marker that it cannot be checked from the core package alone."""

    url: str
    checkable: bool
    systems: Mapping[str, frozenset[str]] = field(default_factory=dict)
    codes: frozenset[str] = _EMPTY  # every code, whatever its system
    reason: str = ""  # why it is not checkable

    def contains(self, code: str, system: str | None = None) -> bool:
        """True when ``code`` (in ``system``, if given) is in the expansion; always True if not checkable."""
        if not self.checkable:
            return True
        if system is None:
            return code in self.codes
        return code in self.systems.get(system, _EMPTY)


@dataclass(slots=True, eq=False)
class ElementRule:
    """What one JSON property of an element may hold."""

    name: str  # JSON property name: "birthDate", "valueQuantity"
    path: str  # ElementDefinition.path: "Patient.birthDate", "Observation.value[x]"
    min: int
    max: int | None  # None when unbounded ("*")
    type_code: str  # the concrete type of this property ("Quantity" for valueQuantity)
    is_primitive: bool
    is_array: bool  # max > 1: a JSON array
    is_system: bool = False  # a bare FHIRPath value (element ids, Extension.url): cannot carry extensions
    choice_of: str | None = None  # "value" for valueQuantity; None when not a choice
    summary: bool = False
    modifier: bool = False
    binding_url: str | None = None  # required binding only
    valueset: ValueSet | None = field(default=None, repr=False)  # the expansion of binding_url
    targets: frozenset[str] | None = None  # Reference/canonical target types; None = any
    content_reference: str | None = None
    node: Node | None = field(default=None, repr=False)  # the children (see module docstring)


@dataclass(frozen=True, slots=True)
class Mandatory:
    """An element with min >= 1: any one of ``keys`` present in the JSON object satisfies it."""

    path: str  # "Observation.status", "Observation.value[x]"
    name: str  # the last path segment: "status", "value[x]"
    keys: tuple[str, ...]  # JSON names that satisfy it, primitive "_name" forms included
    min: int


@dataclass(slots=True, eq=False)
class Node:
    """The children of one element (or of a type's root)."""

    path: str
    elements: dict[str, ElementRule] = field(default_factory=dict, repr=False)
    mandatory: tuple[Mandatory, ...] = ()


@dataclass(slots=True, eq=False)
class TypeDefinition:
    name: str
    kind: str  # primitive-type | complex-type | resource
    abstract: bool
    base: str | None
    node: Node = field(repr=False)
    regex: str | None = None  # primitive types: the regex of the value
    max_length: int | None = None
    # every element path with children (the root included) -> its node
    paths: dict[str, Node] = field(default_factory=dict, repr=False)

    @property
    def is_resource(self) -> bool:
        return self.kind == "resource"


class Definitions:
    """All base R4 types, required-binding value sets, core search parameters and compartments."""

    def __init__(
        self,
        types: dict[str, TypeDefinition],
        valuesets: dict[str, ValueSet],
        search_parameters: list[dict[str, Any]],
        compartments: dict[str, dict[str, list[str]]],
    ) -> None:
        self.types: Mapping[str, TypeDefinition] = types
        self.resource_types: frozenset[str] = frozenset(
            name for name, t in types.items() if t.kind == "resource" and not t.abstract
        )
        self.primitive_types: frozenset[str] = frozenset(
            name for name, t in types.items() if t.kind == "primitive-type"
        )
        self.valuesets: Mapping[str, ValueSet] = valuesets
        self.search_parameters: list[dict[str, Any]] = search_parameters
        self.compartments: dict[str, dict[str, list[str]]] = compartments
        self._summary: dict[str, frozenset[str]] = {}
        self._mandatory: dict[str, frozenset[str]] = {}

    def is_resource_type(self, name: str) -> bool:
        """True for a concrete resource type (``Patient``; not ``DomainResource``)."""
        return name in self.resource_types

    def type(self, name: str) -> TypeDefinition:
        """The definition of a type; KeyError if R4 has no such base type."""
        return self.types[name]

    def summary_elements(self, resource_type: str) -> frozenset[str]:
        """Top-level JSON names marked isSummary (choice types expanded: ``deceasedBoolean``, ...)."""
        found = self._summary.get(resource_type)
        if found is None:
            rules = self.types[resource_type].node.elements.values()
            found = self._summary[resource_type] = frozenset(r.name for r in rules if r.summary)
        return found

    def mandatory_elements(self, resource_type: str) -> frozenset[str]:
        """Top-level element names with min >= 1 (a mandatory choice is named ``medication[x]``)."""
        found = self._mandatory.get(resource_type)
        if found is None:
            mandatory = self.types[resource_type].node.mandatory
            found = self._mandatory[resource_type] = frozenset(m.name for m in mandatory)
        return found

    def valueset(self, url: str) -> ValueSet | None:
        """A required-binding value set by canonical URL (``|version`` ignored); None if not bound anywhere."""
        return self.valuesets.get(url.split("|", 1)[0])


# ---------------------------------------------------------------------------------------------------- loading
def _read(name: str) -> Any:
    return json.loads(gzip.decompress((DATA_DIR / name).read_bytes()))


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


def _load_valuesets(data: dict[str, Any]) -> dict[str, ValueSet]:
    result: dict[str, ValueSet] = {}
    for url, systems in data["valuesets"].items():
        frozen = {system: frozenset(codes) for system, codes in systems.items()}
        every = frozenset(code for codes in frozen.values() for code in codes)
        result[url] = ValueSet(url, True, frozen, every)
    for url, reason in data["uncheckable"].items():
        result[url] = ValueSet(url, False, reason=reason)
    return result


class _Builder:
    """Turns the compact element lists into linked nodes."""

    def __init__(self, raw_types: dict[str, Any], valuesets: dict[str, ValueSet]) -> None:
        self.raw = raw_types
        self.valuesets = valuesets
        self.primitives = {name for name, t in raw_types.items() if t["kind"] == "primitive-type"}
        self.types: dict[str, TypeDefinition] = {}
        self.pending_types: list[ElementRule] = []  # rules whose node is a complex type's root node

    def build(self) -> dict[str, TypeDefinition]:
        for name, raw in self.raw.items():
            self.types[name] = self._type(name, raw)
        for rule in self.pending_types:
            rule.node = self.types[rule.type_code].node
        return self.types

    def _type(self, name: str, raw: dict[str, Any]) -> TypeDefinition:
        elements: list[dict[str, Any]] = raw["elements"]
        root = elements[0]["path"]
        parents = {e["path"].rsplit(".", 1)[0] for e in elements[1:]}
        nodes: dict[str, Node] = {root: Node(root)}
        references: list[ElementRule] = []
        is_resource = raw["kind"] == "resource"
        regex = max_length = None
        for element in elements[1:]:
            path: str = element["path"]
            parent, last = path.rsplit(".", 1)
            if path in parents:
                nodes[path] = Node(path)
            if raw["kind"] == "primitive-type" and last == "value":
                regex, max_length = element.get("regex"), element.get("maxLength")
            types: list[str] = element.get("types") or []
            if is_resource and path == f"{root}.id":
                types = ["id"]
            for rule in self._rules(element, last, types):
                nodes[parent].elements[rule.name] = rule
                if rule.content_reference:
                    references.append(rule)
                elif path in parents:
                    rule.node = nodes[path]
                elif rule.type_code in self.raw and not rule.is_primitive and rule.type_code != "Resource":
                    self.pending_types.append(rule)
        for rule in references:
            assert rule.content_reference is not None
            rule.node = nodes[rule.content_reference.lstrip("#")]
        for node in nodes.values():
            node.mandatory = _mandatory(node)
        base = raw.get("base")
        return TypeDefinition(name, raw["kind"], raw["abstract"], base, nodes[root], regex, max_length, nodes)

    def _rules(self, element: dict[str, Any], last: str, types: list[str]) -> list[ElementRule]:
        binding_url = element.get("binding")
        valueset = self.valuesets.get(binding_url) if binding_url else None
        targets: dict[str, list[str]] = element.get("targets", {})
        content_reference = element.get("contentReference")
        if content_reference:  # the type is that of the referenced element: a backbone
            types = ["BackboneElement"]
        choice = last.endswith("[x]")
        base_name = last[:-3] if choice else last
        maximum = _max(element.get("max", "1"))
        rules = []
        for code in types:
            target_list = targets.get(code)
            rules.append(
                ElementRule(
                    name=base_name + code[0].upper() + code[1:] if choice else base_name,
                    path=element["path"],
                    min=element.get("min", 0),
                    max=maximum,
                    type_code=code,
                    is_primitive=code in self.primitives,
                    is_array=maximum is None or maximum > 1,
                    is_system=element.get("system", False),
                    choice_of=base_name if choice else None,
                    summary=element.get("summary", False),
                    modifier=element.get("modifier", False),
                    binding_url=binding_url,
                    valueset=valueset,
                    targets=frozenset(target_list) if target_list else None,
                    content_reference=content_reference,
                )
            )
        return rules


def _mandatory(node: Node) -> tuple[Mandatory, ...]:
    by_path: dict[str, list[ElementRule]] = {}
    for rule in node.elements.values():
        if rule.min >= 1:
            by_path.setdefault(rule.path, []).append(rule)
    result = []
    for path, rules in by_path.items():
        keys = [r.name for r in rules] + ["_" + r.name for r in rules if r.is_primitive and not r.is_system]
        result.append(Mandatory(path, path.rsplit(".", 1)[1], tuple(keys), rules[0].min))
    return tuple(result)


@lru_cache(maxsize=1)
def load_definitions() -> Definitions:
    """Load (once per process) the generated R4 definitions."""
    valuesets = _load_valuesets(_read("valuesets.json.gz"))
    types = _Builder(_read("elements.json.gz")["types"], valuesets).build()
    return Definitions(
        types,
        valuesets,
        _read("search_parameters.json.gz"),
        _read("compartments.json.gz"),
    )

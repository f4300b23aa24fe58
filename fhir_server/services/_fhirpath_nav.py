"""Evaluating a FHIRPath Patch path to *locations* in the resource JSON, not just values.

Each result is a :class:`Node`: the value plus where it lives (the JSON object holding the property, the property
name, the array position) and the node that owns that object, so operations can write, delete and prune.

* A leading type name (``Patient.``) must be the resource's type or one of its ancestors (``Resource``,
  ``DomainResource``); another capitalised name gives an empty result; a lower-case first name navigates from the
  resource.
* Choice elements are found by their base name: ``Observation.value`` finds ``valueQuantity``.  The element
  definitions come from fhirpathpy's R4 model; for elements it does not know, a property ``name`` + a FHIR type
  name (``valueString``) is taken as a choice.
* A primitive element is present when its value or its ``_name`` object is: ``"given": ["a", null]`` with
  ``"_given": [null, {...}]`` has two items.  Its ``extension``/``id`` are read from the ``_name`` object.
* ``[n]``, ``first()`` and ``last()`` pick from the current collection, ``where(...)`` filters it with fhirpathpy
  (see ``_fhirpath_criteria``), ``ofType(T)`` keeps the items of type ``T`` or a specialisation of it, and
  ``extension('url')`` selects the extensions with that url.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.services._fhirpath_model import (
    child_element,
    choice_types,
    is_choice,
    scope_of,
    type_from_suffix,
    type_matches,
)
from fhir_server.services._fhirpath_path import (
    First,
    Index,
    Last,
    Member,
    OfType,
    Step,
    Where,
)

__all__ = ["Node", "child_nodes", "evaluate", "present", "root_node"]


@dataclass(frozen=True)
class Node:
    """A value found in the resource, with its location."""

    value: Any  # a dict for complex values; a scalar, or None when only ``_name`` exists, for primitives
    parent: dict[str, Any] | None  # the JSON object holding the property; None for the resource itself
    key: str  # the JSON property name (``valueQuantity``, ``given``)
    index: int | None  # the position in the array ``parent[key]`` / ``parent["_" + key]``, if it is an array
    owner: Node | None  # the node whose JSON ``parent`` is (None for the resource itself)
    in_extension_object: bool  # ``parent`` is the ``_name`` object of the primitive ``owner``
    element: str  # the defining element path (``Patient.contact.name``), or a best guess
    scope: str | None  # the type scope of the value (``HumanName``, ``Patient.contact``, ``string``)

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def is_primitive(self) -> bool:
        return not isinstance(self.value, dict)

    def extension_object(self) -> dict[str, Any] | None:
        """The ``_name`` object of a primitive (its ``id`` and ``extension``), if any."""
        if self.parent is None:
            return None
        found = self.parent.get(f"_{self.key}")
        if self.index is not None:
            found = found[self.index] if isinstance(found, list) and self.index < len(found) else None
        return found if isinstance(found, dict) else None

    def container(self) -> dict[str, Any] | None:
        """The JSON object the children of this value live in."""
        return self.value if isinstance(self.value, dict) else self.extension_object()


def root_node(resource: dict[str, Any]) -> Node:
    resource_type = resource.get("resourceType")
    scope = resource_type if isinstance(resource_type, str) else None
    return Node(resource, None, "", None, None, False, scope or "Resource", scope)


def evaluate(resource: dict[str, Any], steps: tuple[Step, ...], where: str) -> list[Node]:
    """The nodes ``steps`` select in ``resource``; ``where`` names the path for errors in criteria."""
    root = root_node(resource)
    nodes = [root]
    first = steps[0] if steps else None
    if isinstance(first, Member) and first.name[:1].isupper():
        if not type_matches(root.scope, first.name):
            return []
        steps = steps[1:]
    for step in steps:
        nodes = _apply(step, nodes, resource, where)
    return nodes


def _apply(step: Step, nodes: list[Node], resource: dict[str, Any], where: str) -> list[Node]:
    if isinstance(step, Member):
        return [child for node in nodes for child in child_nodes(node, step.name)]
    if isinstance(step, Index):
        return nodes[step.position : step.position + 1]
    if isinstance(step, First | Last):
        return nodes[:1] if isinstance(step, First) else nodes[-1:]
    if isinstance(step, Where):
        return [node for node in nodes if step.criteria.matches(node.value, node.scope, resource, where)]
    if isinstance(step, OfType):
        return [node for node in nodes if type_matches(node.scope, step.type_name)]
    extensions = [child for node in nodes for child in child_nodes(node, "extension")]
    return [node for node in extensions if isinstance(node.value, dict) and node.value.get("url") == step.url]


def child_nodes(node: Node, name: str) -> list[Node]:
    """The values of child element ``name`` of ``node`` (several JSON properties for a choice element)."""
    container = node.container()
    if container is None:
        return []
    element = child_element(node.scope, name)
    found: list[Node] = []
    for key, element_path, choice_scope in _properties(container, name, element, node.element):
        for index, value in _items(container, key):
            scope = choice_scope or scope_of(element_path, value)
            found.append(Node(value, container, key, index, node, node.is_primitive, element_path, scope))
    return found


def _properties(
    container: dict[str, Any], name: str, element: str | None, owner_element: str
) -> list[tuple[str, str, str | None]]:
    """(JSON name, element path, scope for choice values) of each property that holds child ``name``."""
    if is_choice(element):
        assert element is not None
        return [
            (f"{name}{suffix}", element, type_from_suffix(suffix))
            for suffix in choice_types(element)
            if present(container, f"{name}{suffix}")
        ]
    if present(container, name) or element is not None:
        return [(name, element or f"{owner_element}.{name}", None)]
    return [
        (key, f"{owner_element}.{name}", type_from_suffix(key[len(name) :]))
        for key in container
        if key.startswith(name)
        and key[len(name) : len(name) + 1].isupper()
        and type_from_suffix(key[len(name) :])
    ]


def present(container: dict[str, Any], key: str) -> bool:
    """Whether property ``key`` has a value or a ``_key`` extension object."""
    return container.get(key) is not None or container.get(f"_{key}") is not None


def _items(container: dict[str, Any], key: str) -> list[tuple[int | None, Any]]:
    """(array position or None, value) for each item of property ``key``, counting ``_key``-only items."""
    values, extensions = container.get(key), container.get(f"_{key}")
    if not isinstance(values, list) and not isinstance(extensions, list):
        return [] if values is None and extensions is None else [(None, values)]
    values = values if isinstance(values, list) else []
    extensions = extensions if isinstance(extensions, list) else []
    items: list[tuple[int | None, Any]] = []
    for index in range(max(len(values), len(extensions))):
        value = values[index] if index < len(values) else None
        if value is not None or (index < len(extensions) and extensions[index] is not None):
            items.append((index, value))
    return items

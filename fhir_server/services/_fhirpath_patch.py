"""Applying parsed FHIRPath Patch operations to a copy of a resource (R4 fhirpatch.html semantics).

* ``add``: the path must select exactly one element; ``name`` is added to it.  The new property is appended when it
  already holds an array or ``is_repeating`` says the element repeats (the array is created if absent); otherwise
  it is set as a single value, and it is an error (422) if it already has one: "add can be used for non-repeating
  elements as long as they do not already exist".  ``name`` is a FHIR element name, so for a choice element it is
  the base name (``value``) and the JSON name comes from the value (``valueQuantity``).  On a primitive, only
  ``extension`` and ``id`` can be added; they go into its ``_name`` object.
* ``insert`` / ``move``: the path names a list: it must end with an element name, and the part before that must
  select exactly one element (``Patient.name[0].given``).  ``insert`` needs ``index <= length`` (an absent list
  is empty), ``move`` needs ``source`` and ``destination`` ``< length``; elements known not to repeat, and
  properties holding a single value, are refused (422).
* ``delete``: the path selects at most one element; none is not an error.  Arrays and objects left empty are
  removed, up to (not including) the resource.
* ``replace``: the path selects exactly one element, whose value is replaced.  A choice element may change type
  (``valueString`` -> ``valueQuantity``).
* The resource itself cannot be deleted or replaced, and a path that selects nothing (or, where one element is
  needed, several) is a 422 naming the operation.

Primitive elements: a primitive's ``_name`` object (its ``id`` and ``extension``) belongs to the element.  Replacing
the element replaces both: the new ``_name`` object is the patch value's ``_valueXxx`` if given, otherwise the old
one is dropped.  Deleting drops both.  In arrays, ``name`` and ``_name`` stay aligned on insert, delete and move
(``_name`` is padded with ``null`` when it has to be created, and removed when it holds nothing but ``null``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.errors import InvalidRequest, ValidationFailed
from fhir_server.services._fhirpath_model import (
    child_element,
    choice_types,
    definition_path,
    is_choice,
    r4_is_repeating,
    scope_of,
)
from fhir_server.services._fhirpath_nav import Node, evaluate, present
from fhir_server.services._fhirpath_params import Operation, parse_parameters
from fhir_server.services._fhirpath_path import Member
from fhir_server.services._fhirpath_values import Built, IsRepeating, PatchValue, TypedValue, build
from fhir_server.services._patch_common import check_identity, clone

__all__ = ["apply_fhirpath_patch"]


def apply_fhirpath_patch(
    resource: dict[str, Any], parameters: Any, is_repeating: IsRepeating | None = r4_is_repeating
) -> dict[str, Any]:
    """Apply a FHIRPath Patch ``Parameters`` resource to a copy of ``resource`` and return the copy.

    ``is_repeating`` defaults to the base R4 cardinalities; pass None to decide from the JSON alone.
    """
    operations = parse_parameters(parameters)
    document: dict[str, Any] = clone(resource)
    for operation in operations:
        _HANDLERS[operation.type](document, operation, is_repeating)
        check_identity(resource, document, operation.where)
    return document


# -- the five operations -------------------------------------------------------------------------------------


def _add(document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None) -> None:
    assert operation.name is not None and operation.value is not None
    target = _single(evaluate(document, operation.path, operation.path_where), operation)
    name = operation.name
    element = child_element(target.scope, name) or f"{target.element}.{name}"
    built = build(operation.value, element, scope_of(element, _raw(operation.value)), is_repeating)
    container = _writable_container(target, name, operation)
    key = _new_key(container, name, element, built, operation)
    repeats = _repeats(is_repeating, element)
    if repeats or isinstance(container.get(key), list) or isinstance(container.get(f"_{key}"), list):
        values, extensions = _list(container, key, operation)
        _insert_item(container, key, values, extensions, len(values), built)
    elif present(container, key):
        raise ValidationFailed(
            f"{element} already has a value; add only creates a non-repeating element that is absent (use replace)",
            expression=operation.where,
        )
    else:
        _set_single(container, key, built)


def _new_key(container: dict[str, Any], name: str, element: str, built: Built, operation: Operation) -> str:
    """The JSON name for a new element: ``name``, or ``name`` + type for a choice (which must be absent)."""
    if not is_choice(element):
        return name
    if any(present(container, f"{name}{suffix}") for suffix in choice_types(element)):
        raise ValidationFailed(
            f"{definition_path(element)} already has a value: use replace", expression=operation.where
        )
    return f"{name}{built.suffix}"


def _insert_item(
    container: dict[str, Any],
    key: str,
    values: list[Any],
    extensions: list[Any] | None,
    index: int,
    built: Built,
) -> None:
    values.insert(index, built.value)
    if extensions is None and built.extension is not None:
        extensions = [None] * (len(values) - 1)
    if extensions is not None:
        extensions.insert(index, built.extension)
    _store_list(container, key, values, extensions)


def _insert(document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None) -> None:
    assert operation.value is not None and operation.index is not None
    container, key, element = _list_location(document, operation, is_repeating)
    values, extensions = _list(container, key, operation)
    if operation.index > len(values):
        raise ValidationFailed(
            f"index {operation.index} is beyond the end of {operation.path_text} ({len(values)} items)",
            expression=operation.where,
        )
    built = build(operation.value, element, scope_of(element, _raw(operation.value)), is_repeating)
    _insert_item(container, key, values, extensions, operation.index, built)


def _move(document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None) -> None:
    assert operation.source is not None and operation.destination is not None
    container, key, _ = _list_location(document, operation, is_repeating)
    values, extensions = _list(container, key, operation)
    for label, position in (("source", operation.source), ("destination", operation.destination)):
        if position >= len(values):
            raise ValidationFailed(
                f"{label} {position} is out of range for {operation.path_text} ({len(values)} items)",
                expression=operation.where,
            )
    for items in (values, extensions):
        if items is not None:
            items.insert(operation.destination, items.pop(operation.source))
    _store_list(container, key, values, extensions)


def _delete(document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None) -> None:
    found = evaluate(document, operation.path, operation.path_where)
    if not found:
        return
    node = _single(found, operation)
    if node.is_root:
        raise ValidationFailed("a patch cannot delete the resource itself", expression=operation.where)
    _remove(node)


def _replace(document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None) -> None:
    assert operation.value is not None
    node = _single(evaluate(document, operation.path, operation.path_where), operation)
    if node.is_root or node.parent is None:
        raise ValidationFailed("a patch cannot replace the resource itself", expression=operation.where)
    built = build(operation.value, node.element, node.scope, is_repeating)
    key = node.key
    if built.suffix and is_choice(node.element):
        key = node.element.rsplit(".", 1)[-1] + built.suffix
    if node.index is None:
        _rename(node.parent, node.key, key)
        _set_single(node.parent, key, built)
        return
    values, extensions = _list(node.parent, key, operation)
    values[node.index] = built.value
    if extensions is None and built.extension is not None:
        extensions = [None] * len(values)
    if extensions is not None:
        extensions[node.index] = built.extension
    _store_list(node.parent, key, values, extensions)


_Handler = Callable[[dict[str, Any], Operation, IsRepeating | None], None]
_HANDLERS: dict[str, _Handler] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}


# -- locating ------------------------------------------------------------------------------------------------


def _single(found: list[Node], operation: Operation) -> Node:
    if len(found) != 1:
        what = "nothing" if not found else f"{len(found)} elements"
        raise ValidationFailed(
            f"{operation.type}: path {operation.path_text!r} matched {what}, not one element",
            expression=operation.where,
        )
    return found[0]


def _list_location(
    document: dict[str, Any], operation: Operation, is_repeating: IsRepeating | None
) -> tuple[dict[str, Any], str, str]:
    """The object holding the list named by an insert/move path, the list's JSON name and its element path."""
    last = operation.path[-1]
    if not isinstance(last, Member) or (len(operation.path) == 1 and last.name[:1].isupper()):
        raise InvalidRequest(
            f"the path of a {operation.type} operation must end with the name of a list element",
            expression=operation.path_where,
        )
    owner = _single(evaluate(document, operation.path[:-1], operation.path_where), operation)
    element = child_element(owner.scope, last.name) or f"{owner.element}.{last.name}"
    if is_choice(element) or _repeats(is_repeating, element) is False:
        raise ValidationFailed(f"{definition_path(element)} is not a list", expression=operation.where)
    return _writable_container(owner, last.name, operation), last.name, element


def _writable_container(node: Node, name: str, operation: Operation) -> dict[str, Any]:
    """The object to add child ``name`` to; a primitive's ``_name`` object is created if needed."""
    if not node.is_primitive:
        container: dict[str, Any] = node.value
        return container
    if name not in ("extension", "id"):
        raise ValidationFailed(
            f"{node.element} is a primitive: only 'extension' or 'id' can be added to it",
            expression=operation.where,
        )
    existing = node.extension_object()
    if existing is not None:
        return existing
    created: dict[str, Any] = {}
    _set_extension_object(node, created)
    return created


def _list(container: dict[str, Any], key: str, operation: Operation) -> tuple[list[Any], list[Any] | None]:
    """Copies of the aligned ``key`` and ``_key`` arrays, padded to one length (absent means empty)."""
    values, extensions = container.get(key), container.get(f"_{key}")
    for found in (values, extensions):
        if found is not None and not isinstance(found, list):
            raise ValidationFailed(f"{key} holds a single value, not a list", expression=operation.where)
    values = list(values or [])
    if extensions is None:
        return values, None
    extensions = list(extensions)
    length = max(len(values), len(extensions))
    return values + [None] * (length - len(values)), extensions + [None] * (length - len(extensions))


def _repeats(is_repeating: IsRepeating | None, element: str) -> bool | None:
    return is_repeating(definition_path(element)) if is_repeating is not None else None


def _raw(value: PatchValue) -> Any:
    return value.value if isinstance(value, TypedValue) else None


# -- writing -------------------------------------------------------------------------------------------------


def _set_single(container: dict[str, Any], key: str, built: Built) -> None:
    for name, content in ((key, built.value), (f"_{key}", built.extension)):
        if content is None:
            container.pop(name, None)
        else:
            container[name] = content


def _store_list(container: dict[str, Any], key: str, values: list[Any], extensions: list[Any] | None) -> None:
    """Write aligned arrays back, dropping an all-null ``_key`` and an array left with nothing in it."""
    if extensions is None or all(item is None for item in extensions):
        container.pop(f"_{key}", None)
        extensions = None
    else:
        container[f"_{key}"] = extensions
    if values and (extensions is not None or any(item is not None for item in values)):
        container[key] = values
    else:
        container.pop(key, None)


def _rename(container: dict[str, Any], old: str, new: str) -> None:
    """Rename a property (a choice changing type), keeping its place in the object."""
    if old == new:
        return
    items = [(new if key == old else key, value) for key, value in container.items() if key != f"_{old}"]
    container.clear()
    container.update(items)


def _set_extension_object(node: Node, value: dict[str, Any] | None) -> None:
    assert node.parent is not None
    key = node.key
    if node.index is None:
        _set_single(node.parent, key, Built(node.value, value, None))
        return
    values, extensions = node.parent.get(key), node.parent.get(f"_{key}")
    values = list(values) if isinstance(values, list) else []
    extensions = list(extensions) if isinstance(extensions, list) else []
    length = max(len(values), len(extensions), node.index + 1)
    values += [None] * (length - len(values))
    extensions += [None] * (length - len(extensions))
    extensions[node.index] = value
    _store_list(node.parent, key, values, extensions)


def _remove(node: Node) -> None:
    """Delete ``node`` (value and ``_name`` object), then prune containers this left empty."""
    parent = node.parent
    assert parent is not None
    if node.index is None:
        parent.pop(node.key, None)
        parent.pop(f"_{node.key}", None)
    else:
        values, extensions = parent.get(node.key), parent.get(f"_{node.key}")
        values = list(values) if isinstance(values, list) else []
        extensions = list(extensions) if isinstance(extensions, list) else None
        for items in (values, extensions):
            if items is not None and node.index < len(items):
                items.pop(node.index)
        _store_list(parent, node.key, values, extensions)
    _prune(node)


def _prune(node: Node) -> None:
    """After removing ``node``: if the object that held it is now empty, remove that too (never the resource)."""
    owner, parent = node.owner, node.parent
    if owner is None or parent is None or parent or owner.is_root:
        return
    if not node.in_extension_object or owner.value is None:
        _remove(owner)  # an empty complex value, or a primitive left with neither value nor extensions
    else:
        _set_extension_object(owner, None)

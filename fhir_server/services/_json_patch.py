"""JSON Patch (RFC 6902) over JSON Pointers (RFC 6901), applied to a copy of a resource.

Error expressions are JSON Pointers into the *patch document*: ``/2`` is the third operation and ``/2/path``,
``/2/from`` or ``/2/value`` the member of it that is at fault.

* 400 ``InvalidRequest`` - the document is malformed whatever resource it is applied to: not an array, an
  operation that is not an object, an unknown ``op``, a missing or non-string ``path``/``from``, a missing
  ``value``, a pointer that is neither empty nor starts with ``/``, a ``~`` not followed by ``0`` or ``1``, or a
  ``move`` whose ``from`` is a proper prefix of its ``path``.
* 422 ``ValidationFailed`` - the document is well formed but cannot be applied to this resource: a location that
  does not exist, an array index that is not a canonical non-negative integer (``01``, ``x``, ``-`` outside
  ``add``) or is out of range (``index == length`` is allowed for ``add`` only, ``-`` appends), a parent that is
  not a container, removing the whole document, a failed ``test``.

After each operation the result must still be a JSON object with the original ``resourceType`` and ``id``
(400 naming the operation, ``/2``), so ``replace /id`` or replacing the document by an array is refused.

``test`` uses :func:`json_equal`: numbers compare numerically, as RFC 6902 says, so a ``1`` in the patch equals a
stored ``1.0``; object key order is ignored.  Values from the patch are copied into the resource, never shared.
Members other than ``op``, ``path``, ``from`` and ``value`` are ignored, as RFC 6902 requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import InvalidRequest, ValidationFailed
from fhir_server.services._patch_common import check_identity, clone, json_equal

__all__ = ["apply_json_patch"]

_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")
_MISSING: Any = object()


@dataclass(frozen=True)
class _Operation:
    number: int
    op: str
    path: tuple[str, ...]
    source: tuple[str, ...] | None
    value: Any

    def where(self, member: str = "") -> str:
        return f"/{self.number}/{member}" if member else f"/{self.number}"


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 document to a copy of ``resource`` and return the copy."""
    parsed = _parse_document(operations)
    document: Any = clone(resource)
    for operation in parsed:
        document = _apply(document, operation)
        check_identity(resource, document, operation.where())
    result: dict[str, Any] = document
    return result


# -- parsing -------------------------------------------------------------------------------------------------


def _parse_document(operations: Any) -> list[_Operation]:
    if not isinstance(operations, list):
        raise InvalidRequest("a JSON Patch document must be a JSON array of operations", expression="/")
    return [_parse_operation(number, item) for number, item in enumerate(operations)]


def _parse_operation(number: int, item: Any) -> _Operation:
    if not isinstance(item, dict):
        raise InvalidRequest(f"JSON Patch operation {number} must be an object", expression=f"/{number}")
    op = item.get("op")
    if op not in ("add", "remove", "replace", "move", "copy", "test"):
        raise InvalidRequest(f"JSON Patch operation {number}: unknown op {op!r}", expression=f"/{number}/op")
    path = parse_pointer(item.get("path", _MISSING), f"/{number}/path")
    source = parse_pointer(item.get("from", _MISSING), f"/{number}/from") if op in ("move", "copy") else None
    value = item.get("value", _MISSING)
    if op in ("add", "replace", "test") and value is _MISSING:
        raise InvalidRequest(f"JSON Patch operation {number} ({op}) needs a value", expression=f"/{number}")
    if op == "move" and source is not None and len(source) < len(path) and path[: len(source)] == source:
        raise InvalidRequest(
            f"JSON Patch operation {number}: cannot move a value into one of its own children",
            expression=f"/{number}/from",
        )
    return _Operation(number, op, path, source, value)


def parse_pointer(text: Any, where: str) -> tuple[str, ...]:
    """The reference tokens of an RFC 6901 pointer, unescaped (``~1`` to ``/`` first, then ``~0`` to ``~``)."""
    if text is _MISSING or not isinstance(text, str):
        raise InvalidRequest(f"{where} must be a JSON Pointer string", expression=where)
    if text == "":
        return ()
    if not text.startswith("/"):
        raise InvalidRequest(f"JSON Pointer {text!r} must be empty or start with '/'", expression=where)
    if _BAD_ESCAPE.search(text):
        raise InvalidRequest(f"JSON Pointer {text!r} has a '~' not followed by '0' or '1'", expression=where)
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/"))


# -- applying ------------------------------------------------------------------------------------------------


def _apply(document: Any, operation: _Operation) -> Any:
    op, where = operation.op, operation.where("path")
    if op == "add":
        return _add(document, operation.path, clone(operation.value), where)
    if op == "remove":
        _remove(document, operation.path, where)
        return document
    if op == "replace":
        return _replace(document, operation.path, clone(operation.value), where)
    if op == "test":
        _test(document, operation)
        return document
    return _move(document, operation) if op == "move" else _copy(document, operation)


def _move(document: Any, operation: _Operation) -> Any:
    source = _source(operation)
    if source == operation.path:
        _get(document, source, operation.where("from"))
        return document
    value = _remove(document, source, operation.where("from"))
    return _add(document, operation.path, value, operation.where("path"))


def _copy(document: Any, operation: _Operation) -> Any:
    value = clone(_get(document, _source(operation), operation.where("from")))
    return _add(document, operation.path, value, operation.where("path"))


def _source(operation: _Operation) -> tuple[str, ...]:
    assert operation.source is not None, "move and copy always carry a parsed 'from'"
    return operation.source


def _test(document: Any, operation: _Operation) -> None:
    actual = _get(document, operation.path, operation.where("path"))
    if not json_equal(actual, operation.value):
        raise ValidationFailed(
            f"JSON Patch test failed: the value at {_show(operation.path)} differs",
            expression=operation.where("value"),
        )


def _add(document: Any, path: tuple[str, ...], value: Any, where: str) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1], where)
    token = path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        if token == "-":
            parent.append(value)
        else:
            parent.insert(_index(token, len(parent) + 1, path, where), value)
    else:
        raise _not_found(path, where, "its parent is not an object or array")
    return document


def _remove(document: Any, path: tuple[str, ...], where: str) -> Any:
    if not path:
        raise ValidationFailed("JSON Patch cannot remove the whole resource", expression=where)
    parent = _get(document, path[:-1], where)
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise _not_found(path, where)
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_index(token, len(parent), path, where))
    raise _not_found(path, where, "its parent is not an object or array")


def _replace(document: Any, path: tuple[str, ...], value: Any, where: str) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1], where)
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise _not_found(path, where)
        parent[token] = value
    elif isinstance(parent, list):
        parent[_index(token, len(parent), path, where)] = value
    else:
        raise _not_found(path, where, "its parent is not an object or array")
    return document


def _get(document: Any, path: tuple[str, ...], where: str) -> Any:
    current = document
    for depth, token in enumerate(path, start=1):
        if isinstance(current, dict):
            if token not in current:
                raise _not_found(path[:depth], where)
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(token, len(current), path[:depth], where)]
        else:
            raise _not_found(path[:depth], where, "its parent is not an object or array")
    return current


def _index(token: str, limit: int, path: tuple[str, ...], where: str) -> int:
    """A canonical array index below ``limit`` (the array length, or length + 1 for ``add``)."""
    if not _INDEX.fullmatch(token):
        raise ValidationFailed(
            f"JSON Patch: {token!r} in {_show(path)} is not an array index", expression=where
        )
    index = int(token)
    if index >= limit:
        raise ValidationFailed(
            f"JSON Patch: array index {index} in {_show(path)} is out of range", expression=where
        )
    return index


def _not_found(path: tuple[str, ...], where: str, why: str = "") -> ValidationFailed:
    detail = f" ({why})" if why else ""
    return ValidationFailed(f"JSON Patch: no value at {_show(path)}{detail}", expression=where)


def _show(path: tuple[str, ...]) -> str:
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in path) or '""'

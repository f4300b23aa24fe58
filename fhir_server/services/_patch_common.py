"""Helpers shared by the two patch formats, over parsed JSON values (dicts, lists, str, bool, None, int,
Decimal/FhirDecimal, float).

* :func:`clone` copies containers and shares leaves.  Every leaf is immutable (``FhirDecimal`` included), so the
  copy is as safe as ``copy.deepcopy`` and keeps each decimal's original spelling.
* :func:`json_equal` is the structural equality RFC 6902 ``test`` asks for: objects compare by key set and
  member values (key order ignored), arrays element by element, strings by code points, and numbers by numeric
  value, so ``FhirDecimal('1.0')`` equals ``1``.  Booleans are not numbers: ``true`` never equals ``1``.
* :func:`check_identity` is run after every operation: a patch may not turn the resource into something that is
  not a JSON object, nor change its ``resourceType`` or ``id``.  Like an update whose body ``id`` disagrees with
  the URL, this is a bad request (400), and the error names the operation that did it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.errors import InvalidRequest

__all__ = ["check_identity", "clone", "is_number", "json_equal"]


def clone(value: Any) -> Any:
    """A copy of a JSON value whose containers are new objects (leaves are immutable and shared)."""
    if isinstance(value, dict):
        return {key: clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value


def is_number(value: Any) -> bool:
    """True for JSON numbers; ``bool`` is excluded even though Python treats it as an int."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """Structural JSON equality as defined by RFC 6902 section 4.6."""
    if is_number(left) or is_number(right):
        return is_number(left) and is_number(right) and _number_equal(left, right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    return type(left) is type(right) and bool(left == right)


def _number_equal(left: int | float | Decimal, right: int | float | Decimal) -> bool:
    return _as_decimal(left) == _as_decimal(right)


def _as_decimal(value: int | float | Decimal) -> Decimal:
    # A float goes through its shortest repr, so 0.1 equals the decimal 0.1 rather than 0.1000000000000000055...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def check_identity(original: dict[str, Any], current: Any, expression: str) -> None:
    """Refuse a patch result that is not an object or whose ``resourceType``/``id`` differ from the original."""
    if not isinstance(current, dict):
        raise InvalidRequest("the patched resource must remain a JSON object", expression=expression)
    for key in ("resourceType", "id"):
        if not json_equal(original.get(key), current.get(key)):
            raise InvalidRequest(f"a patch must not change the resource's {key}", expression=expression)

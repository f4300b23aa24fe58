"""FHIRPath semantics for computed values: Boolean logic, equality, aggregates and positional functions.

* Singleton evaluation of a collection as a Boolean: empty → empty; one Boolean → it; one other item → true;
  several items (an error in FHIRPath) → empty.
* ``=`` compares collections item by item in order (numbers by decimal value, Booleans only with Booleans);
  an empty operand gives empty.  ``!=`` is its negation.
* ``and``/``or``/``xor``/``implies`` follow FHIRPath's three-valued logic.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_server.indexing._fp_parse import Expr, Literal

__all__ = ["AGGREGATES", "AGGREGATE_TYPES", "LOGIC", "POSITIONS", "CannotCompile", "exists", "truth"]

EMPTY: list[Any] = []


class CannotCompile(Exception):
    """The expression needs FHIRPath features the fast compiler does not implement."""


def truth(items: list[Any]) -> bool | None:
    """Singleton evaluation of a collection as a Boolean: empty → None; one Boolean → it; one other item →
    True; several items (an error in FHIRPath) → None."""
    if len(items) != 1:
        return None
    value = items[0]
    return value if isinstance(value, bool) else True


def _item_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return type(a) is type(b) and bool(a == b)


def _equals(left: list[Any], right: list[Any]) -> bool | None:
    if not left or not right:
        return None
    return len(left) == len(right) and all(_item_equal(a, b) for a, b in zip(left, right, strict=True))


def _wrap(value: bool | None) -> list[Any]:
    return EMPTY if value is None else [value]


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _xor(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None or b is None else a != b


def _implies(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is True:
        return True
    return None if a is None or b is None else False


def _not_equal(left: list[Any], right: list[Any]) -> list[Any]:
    result = _equals(left, right)
    return _wrap(None if result is None else not result)


def _boolean_op(
    fn: Callable[[bool | None, bool | None], bool | None],
) -> Callable[[list[Any], list[Any]], list[Any]]:
    return lambda left, right: _wrap(fn(truth(left), truth(right)))


LOGIC: dict[str, Callable[[list[Any], list[Any]], list[Any]]] = {
    "=": lambda left, right: _wrap(_equals(left, right)),
    "!=": _not_equal,
    "and": _boolean_op(_and),
    "or": _boolean_op(_or),
    "xor": _boolean_op(_xor),
    "implies": _boolean_op(_implies),
}


def exists(items: list[Any]) -> list[Any]:
    return [bool(items)]


def _not(items: list[Any]) -> list[Any]:
    value = truth(items)
    return _wrap(None if value is None else not value)


AGGREGATES: dict[str, Callable[[list[Any]], list[Any]]] = {
    "exists": exists,
    "empty": lambda items: [not items],
    "not": _not,
    "count": lambda items: [len(items)],
    "hasValue": lambda items: [len(items) == 1 and isinstance(items[0], str | bool | int | Decimal)],
}
AGGREGATE_TYPES = {"exists": "boolean", "empty": "boolean", "not": "boolean", "count": "integer",
                    "hasValue": "boolean"}  # fmt: skip


def _int_arg(args: tuple[Expr, ...]) -> int:
    if len(args) != 1 or not isinstance(args[0], Literal) or type(args[0].value) is not int:
        raise CannotCompile("a positional function needs one integer literal")
    return args[0].value


def _no_args(args: tuple[Expr, ...]) -> None:
    if args:
        raise CannotCompile("unexpected arguments")


def _first(args: tuple[Expr, ...]) -> Callable[[list[Any]], list[Any]]:
    _no_args(args)
    return lambda items: items[:1]


def _last(args: tuple[Expr, ...]) -> Callable[[list[Any]], list[Any]]:
    _no_args(args)
    return lambda items: items[-1:]


def _tail(args: tuple[Expr, ...]) -> Callable[[list[Any]], list[Any]]:
    _no_args(args)
    return lambda items: items[1:]


def _skip(args: tuple[Expr, ...]) -> Callable[[list[Any]], list[Any]]:
    n = max(_int_arg(args), 0)
    return lambda items: items[n:]


def _take(args: tuple[Expr, ...]) -> Callable[[list[Any]], list[Any]]:
    n = max(_int_arg(args), 0)
    return lambda items: items[:n]


POSITIONS: dict[str, Callable[[tuple[Expr, ...]], Callable[[list[Any]], list[Any]]]] = {
    "first": _first,
    "last": _last,
    "tail": _tail,
    "skip": _skip,
    "take": _take,
}

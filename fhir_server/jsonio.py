"""JSON in and out with FHIR fidelity.

FHIR decimals must keep their exact digits (``72.50`` stays ``72.50``), so a request body is parsed once with the
standard library parser and every JSON number that is not a small integer becomes a :class:`FhirDecimal`, a
``Decimal`` that remembers the text it was written with.  Serialisation uses orjson and writes a ``FhirDecimal``
back as that exact text (``orjson.Fragment``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["FhirDecimal", "JsonError", "dumps", "loads", "plain"]

_INT_LIMIT = 2**63


class JsonError(ValueError):
    """The body is not well-formed JSON."""


class FhirDecimal(Decimal):
    """A JSON number that keeps its original spelling."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> FhirDecimal:
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __repr__(self) -> str:
        return f"FhirDecimal({self.text!r})"

    def __str__(self) -> str:
        return self.text


def _parse_int(text: str) -> int | FhirDecimal:
    value = int(text)
    if text == "-0" or not -_INT_LIMIT < value < _INT_LIMIT:
        return FhirDecimal(text)
    return value


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not valid JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError(f"duplicate property {key!r}")
            seen.add(key)
    return result


_decoder = json.JSONDecoder(
    parse_float=FhirDecimal,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_pairs,
)


def loads(data: bytes | str) -> Any:
    """Parse JSON, keeping decimals exact and refusing duplicate keys, NaN and Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if text.startswith("\ufeff"):
            text = text[1:]
        return _decoder.decode(text)
    except UnicodeDecodeError as exc:
        raise JsonError(f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise JsonError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def _default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    """Serialise to UTF-8 JSON bytes; decimals are written exactly as they were read."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)


def plain(value: Any) -> Any:
    """What ``loads(orjson.dumps(value))`` gives, without the text in between: a fresh copy of a JSON value built
    in memory (dicts, lists, tuples, str, int, bool, None, float, ``orjson.Fragment`` numbers), with numbers as
    :func:`loads` reads them (a decimal a ``FhirDecimal`` keeping its digits).  TypeError for what orjson cannot
    serialise (without a default)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError("Dict key must be str")
            out[key] = item if type(item) is str else plain(item)
        return out
    if kind is list or kind is tuple:
        return [item if type(item) is str else plain(item) for item in value]
    if kind is int and -_INT_LIMIT < value < _INT_LIMIT:
        return value
    if kind is int or kind is float or kind is orjson.Fragment:
        return loads(orjson.dumps(value))
    raise TypeError(f"Type is not JSON serializable: {kind.__name__}")

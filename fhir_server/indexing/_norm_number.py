"""``number`` and ``quantity`` parameter entries with implicit precision ranges.

The range of a number comes from how it is written (search.html#number): half a unit of its last significant
digit either side — ``100`` → [99.5, 100.5), ``100.00`` → [99.995, 100.005), ``1e2`` → [50, 150), ``5.40`` →
[5.395, 5.405).  JSON numbers arrive as ``int`` or ``FhirDecimal`` (which keeps the text); a plain ``float``
is read from its shortest text.  Integers get the same rule (``3`` → [2.5, 3.5)).

Quantities (Quantity, Age, Duration, Distance, Count, and SimpleQuantity/MoneyQuantity profiles) carry their
``system``/``code``/``unit``; with system UCUM and a code :mod:`~fhir_server.indexing._ucum` converts exactly,
the canonical code, value and range too.  A ``comparator`` opens the range on its side (``<5`` → [-inf, 5.5),
``>=5`` → [4.5, +inf)).  Money is a quantity with system ``urn:iso:std:iso:4217`` and the currency as code.
Range (for number and quantity parameters) is one entry from ``low`` to ``high`` (each end's precision range;
a missing end is open), valued at ``low`` (else ``high``), with the units of the ends.  SampledData and values
without a number give nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_server.indexing._ucum import UCUM, canonicalise
from fhir_server.indexing.entries import Entry, NumberEntry, QuantityEntry

__all__ = ["CURRENCY", "NUMBER_NORMALISERS", "QUANTITY_NORMALISERS", "number_range"]

CURRENCY = "urn:iso:std:iso:4217"
Out = list[Entry]
Normaliser = Callable[[str, Any, dict[str, Any], Out], None]
Range = tuple[float, float, float]  # value, low, high
_CACHE_LIMIT = 50_000
_cache: dict[str, Range | None] = {}


def _decimal_range(text: str) -> Range | None:
    try:
        value = Decimal(text)
        if not value.is_finite():
            return None
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        half = Decimal(5).scaleb(exponent - 1)
        return float(value), float(value - half), float(value + half)
    except ArithmeticError:  # InvalidOperation, or an exponent beyond the decimal context (1e999999999)
        return None


def number_range(value: Any) -> Range | None:
    """``(value, low, high)`` of a JSON number, or None for anything else (booleans included)."""
    kind = type(value)
    if kind is int:
        return float(value), value - 0.5, value + 0.5
    if kind is bool or not isinstance(value, Decimal | float):
        return None
    text = getattr(value, "text", None) or (repr(value) if kind is float else str(value))
    found = _cache.get(text, False)
    if found is False:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        found = _cache[text] = _decimal_range(text)
    return found  # type: ignore[return-value]


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


def _number(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    found = number_range(value)
    if found is not None:
        out.append(NumberEntry(param, *found))


def _range_ends(value: Any) -> tuple[Range, dict[str, Any]] | None:
    """The combined (value, low, high) of a Range and the end whose units it uses."""
    if type(value) is not dict:
        return None
    low_end, high_end = value.get("low"), value.get("high")
    low = number_range(low_end.get("value")) if type(low_end) is dict else None
    high = number_range(high_end.get("value")) if type(high_end) is dict else None
    if low is None and high is None:
        return None
    units = low_end if low is not None else high_end
    assert type(units) is dict
    return (
        (low or high)[0],  # type: ignore[index]
        low[1] if low is not None else -math.inf,
        high[2] if high is not None else math.inf,
    ), units


def _number_range(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    found = _range_ends(value)
    if found is not None:
        out.append(NumberEntry(param, *found[0]))


def _quantity_entry(
    param: str, found: Range, system: str | None, code: str | None, unit: str | None
) -> QuantityEntry:
    value, low, high = found
    if system == UCUM and code is not None:
        canonical = canonicalise(code, value, low, high)
        if canonical is not None:
            return QuantityEntry(param, value, low, high, system, code, unit, *canonical)
    return QuantityEntry(param, value, low, high, system, code, unit)


def _comparator(found: Range, comparator: Any) -> Range:
    if comparator in ("<", "<="):
        return found[0], -math.inf, found[2]
    if comparator in (">", ">="):
        return found[0], found[1], math.inf
    return found


def _quantity(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is not dict:
        return
    found = number_range(value.get("value"))
    if found is None:
        return
    if "comparator" in value:
        found = _comparator(found, value["comparator"])
    system, code, unit = _str(value.get("system")), _str(value.get("code")), _str(value.get("unit"))
    out.append(_quantity_entry(param, found, system, code, unit))


def _money(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is dict:
        found = number_range(value.get("value"))
        if found is not None:
            currency = _str(value.get("currency"))
            out.append(QuantityEntry(param, *found, CURRENCY if currency else None, currency, currency))


def _quantity_range(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    found = _range_ends(value)
    if found is not None:
        units = found[1]
        system, code, unit = _str(units.get("system")), _str(units.get("code")), _str(units.get("unit"))
        out.append(_quantity_entry(param, found[0], system, code, unit))


def _quantity_number(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is dict:
        _number(param, value.get("value"), resource, out)


def _bare_number(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    found = number_range(value)
    if found is not None:
        out.append(QuantityEntry(param, *found, None, None, None))


_NUMBERS = ("decimal", "integer", "positiveInt", "unsignedInt")
_QUANTITIES = ("Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity")
NUMBER_NORMALISERS: dict[str, Normaliser] = {
    **dict.fromkeys(_NUMBERS, _number),
    "Range": _number_range,
    **dict.fromkeys(_QUANTITIES, _quantity_number),
}
QUANTITY_NORMALISERS: dict[str, Normaliser] = {
    **dict.fromkeys(_QUANTITIES, _quantity),
    "Money": _money,
    "Range": _quantity_range,
    **dict.fromkeys(_NUMBERS, _bare_number),
}

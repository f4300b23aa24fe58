"""Parsing typed search values (with prefixes, escapes and implicit precision) and the normalisation strings
share with the index."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from fhir_server.indexing.extract import normalise_string
from fhir_server.search.dates import parse_period
from fhir_server.search.model import (
    PREFIXES,
    DateValue,
    NearValue,
    NumberValue,
    Prefix,
    QuantityValue,
    StringValue,
    TokenValue,
)

# (code, value, low, high) → canonical (code, value, low, high), or None when there is no exact conversion
CanonicalFn = Callable[[str, float, float, float], tuple[str, float, float, float] | None]


class BadValue(ValueError):
    """A search value that does not parse; the message says why."""


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash; escapes are kept for :func:`unescape`."""
    if "\\" not in text:
        return text.split(sep)
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",|$\\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def split_prefix(raw: str) -> tuple[Prefix, str]:
    for prefix in PREFIXES:
        if raw.startswith(prefix) and len(raw) > 2 and not raw[2:3].isalpha():
            return prefix, raw[2:]
    return "eq", raw


def precision_range(value: Decimal) -> tuple[float, float]:
    """The implicit range of a decimal: ``100`` → [99.5, 100.5), ``100.00`` → [99.995, 100.005),
    ``1e2`` → [50, 150)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return float(value - half), float(value + half)


def parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise BadValue(f"{text!r} is not a number") from exc
    if not value.is_finite():
        raise BadValue(f"{text!r} is not a finite number")
    return value


def string_value(raw: str) -> StringValue:
    text = unescape(raw)
    return StringValue(text, normalise_string(text))


def token_value(raw: str) -> TokenValue:
    pieces = split_unescaped(raw, "|")
    if len(pieces) == 1:
        return TokenValue(None, unescape(pieces[0]) or None)
    if len(pieces) == 2:
        system, code = (unescape(p) for p in pieces)
        return TokenValue(system, code or None)
    raise BadValue(f"token {raw!r} has more than one unescaped '|'")


def of_type_value(raw: str) -> TokenValue:
    pieces = [unescape(p) for p in split_unescaped(raw, "|")]
    if len(pieces) != 3 or not all(pieces):
        raise BadValue(f":of-type needs type-system|type-code|value, got {raw!r}")
    return TokenValue(None, pieces[2], pieces[0], pieces[1])


def date_value(raw: str) -> DateValue:
    prefix, rest = split_prefix(raw)
    try:
        low, high = parse_period(unescape(rest))
    except ValueError as exc:
        raise BadValue(str(exc)) from exc
    return DateValue(prefix, low.timestamp(), high.timestamp())


def number_value(raw: str) -> NumberValue:
    prefix, rest = split_prefix(raw)
    value = parse_decimal(unescape(rest))
    low, high = precision_range(value)
    return NumberValue(prefix, value, low, high)


def quantity_value(raw: str, canonicalise: CanonicalFn | None = None) -> QuantityValue:
    pieces = [unescape(p) for p in split_unescaped(raw, "|")]
    if len(pieces) not in (1, 3):
        raise BadValue(f"quantity {raw!r} must be number or number|system|code")
    prefix, number = split_prefix(pieces[0])
    value = parse_decimal(number)
    low, high = precision_range(value)
    system = (pieces[1] or None) if len(pieces) == 3 else None
    code = (pieces[2] or None) if len(pieces) == 3 else None
    canonical = None
    if canonicalise is not None and code is not None and system in (None, "http://unitsofmeasure.org"):
        canonical = canonicalise(code, float(value), low, high)
    if canonical is None:
        return QuantityValue(prefix, value, low, high, system, code)
    ccode, cvalue, clow, chigh = canonical
    return QuantityValue(prefix, value, low, high, system, code, ccode, cvalue, clow, chigh)



EARTH_RADIUS_KM = 6371.0088
NEAR_DEFAULT_KM = 10.0
_DISTANCE_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344, "[ft_i]": 0.0003048}


def near_value(raw: str) -> NearValue:
    """``lat|lon[|distance[|units]]``; units default to km, the distance to 10 km (the spec leaves it to the
    server)."""
    pieces = [unescape(p) for p in split_unescaped(raw, "|")]
    if len(pieces) < 2 or len(pieces) > 4:
        raise BadValue("near takes latitude|longitude|distance|units")
    try:
        lat, lon = float(parse_decimal(pieces[0])), float(parse_decimal(pieces[1]))
        distance = float(parse_decimal(pieces[2])) if len(pieces) > 2 and pieces[2] else NEAR_DEFAULT_KM
    except BadValue as exc:
        raise BadValue(f"near: {exc}") from exc
    unit = pieces[3] if len(pieces) > 3 and pieces[3] else "km"
    if unit not in _DISTANCE_UNITS:
        raise BadValue(f"near: unknown distance unit {unit!r} (km, m, mi, [mi_i], [ft_i])")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or distance < 0:
        raise BadValue("near: latitude, longitude or distance out of range")
    return NearValue(lat, lon, distance * _DISTANCE_UNITS[unit])


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))

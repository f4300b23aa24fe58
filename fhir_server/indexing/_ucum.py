"""UCUM canonical units for quantities, only where the conversion is exact (a decimal factor, no offset).

A UCUM code is read as a product of terms joined by ``.`` and ``/`` (left to right, ``/`` dividing by the next
term), each term an optional decimal prefix, an atom and an optional integer exponent; ``{annotations}`` are
unity; ``10*n``/``10^n`` are powers of ten.  Each atom maps to a factor times base units:

============================  =====================================================  ==============
kind                          atoms (prefixable ones marked *)                       base
============================  =====================================================  ==============
mass                          g*, [lb_av] = 453.59237 g, [oz_av] = 28.349523125 g    g
length                        m*, [in_i] = 0.0254 m, [ft_i] = 0.3048 m               m
volume                        L* / l* = 0.001 m3                                     m3
time                          s*, min = 60 s, h = 3600 s, d = 86400 s, wk = 7 d,     s
                              mo = 30.4375 d (UCUM mean Julian month), a = 365.25 d
amount of substance           mol*                                                   mol
dimensionless                 % = 0.01, 10*n, 10^n, {annotation}                     1
============================  =====================================================  ==============

Prefixes: Y Z E P T G M k h da d c m u n p f a z y (powers of ten).  So ``mg`` → 0.001 ``g``, ``mg/dL`` → 10
``g.m-3``, ``mmol/L`` → 1 ``mol.m-3``, ``/min`` → 1/60 ``s-1``, ``kg/m2`` → 1000 ``g.m-2``.  The canonical code
lists the base units sorted, each with its exponent when not 1, joined with ``.`` (``1`` when dimensionless).

Not converted (no canonical form, so such quantities match on their own code only): temperatures (``Cel``,
``[degF]``: affine), ``mm[Hg]`` and every atom not in the table (``U``, ``eq``, ``[iU]``, ...), parenthesised
expressions.  Values are converted with decimal arithmetic from the float's shortest text, so the index and the
query side (which calls :func:`canonicalise` with the same floats) get identical numbers.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from functools import lru_cache

__all__ = ["UCUM", "canonical_unit", "canonicalise"]

UCUM = "http://unitsofmeasure.org"

_PREFIXES = {
    "Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1,
    "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15, "a": -18, "z": -21, "y": -24,
}  # fmt: skip
_Dims = tuple[tuple[str, int], ...]
# atom -> (factor, base units, prefixable)
_ATOMS: dict[str, tuple[Decimal, _Dims, bool]] = {
    "g": (Decimal(1), (("g", 1),), True),
    "[lb_av]": (Decimal("453.59237"), (("g", 1),), False),
    "[oz_av]": (Decimal("28.349523125"), (("g", 1),), False),
    "m": (Decimal(1), (("m", 1),), True),
    "[in_i]": (Decimal("0.0254"), (("m", 1),), False),
    "[ft_i]": (Decimal("0.3048"), (("m", 1),), False),
    "L": (Decimal("0.001"), (("m", 3),), True),
    "l": (Decimal("0.001"), (("m", 3),), True),
    "s": (Decimal(1), (("s", 1),), True),
    "min": (Decimal(60), (("s", 1),), False),
    "h": (Decimal(3600), (("s", 1),), False),
    "d": (Decimal(86400), (("s", 1),), False),
    "wk": (Decimal(604800), (("s", 1),), False),
    "mo": (Decimal(2629800), (("s", 1),), False),
    "a": (Decimal(31557600), (("s", 1),), False),
    "mol": (Decimal(1), (("mol", 1),), True),
    "%": (Decimal("0.01"), (), False),
}
_TERM = re.compile(r"(?P<unit>[^\d+\-]*)(?P<exp>[+-]?\d+)?")
_POWER_OF_TEN = re.compile(r"10[*^](?P<exp>[+-]?\d+)")
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_CACHE_LIMIT = 50_000
_converted: dict[tuple[str, float, float, float], tuple[str, float, float, float] | None] = {}
_MAX_EXPONENT = 30  # larger exponents are not units anyone writes; refusing them keeps decimals in range


def _atom(text: str) -> tuple[Decimal, _Dims] | None:
    found = _ATOMS.get(text)
    if found is not None:
        return found[0], found[1]
    for size in (2, 1):
        prefix, rest = text[:size], text[size:]
        atom = _ATOMS.get(rest)
        if prefix in _PREFIXES and atom is not None and atom[2]:
            return atom[0].scaleb(_PREFIXES[prefix]), atom[1]
    return None


def _term(text: str) -> tuple[Decimal, _Dims] | None:
    power = _POWER_OF_TEN.fullmatch(text)
    if power is not None:
        exponent = int(power["exp"])
        return (Decimal(1).scaleb(exponent), ()) if abs(exponent) <= _MAX_EXPONENT else None
    match = _TERM.fullmatch(text)
    if match is None:
        return None
    unit, exp = match["unit"], int(match["exp"] or 1)
    if abs(exp) > _MAX_EXPONENT:
        return None
    if not unit:
        return (Decimal(1), ()) if match["exp"] is None or match["exp"] == "1" else None
    atom = _atom(unit)
    if atom is None:
        return None
    return atom[0] ** exp, tuple((base, power * exp) for base, power in atom[1])


@lru_cache(maxsize=4096)
def canonical_unit(code: str) -> tuple[Decimal, str] | None:
    """``(factor, canonical code)`` for a UCUM code with an exact conversion, else None."""
    if not code or "(" in code or " " in code:
        return None
    factor = Decimal(1)
    dims: dict[str, int] = {}
    direction = 1
    for text in re.split(r"([./])", _ANNOTATION.sub("", code)):
        if text in (".", "/"):
            direction = -1 if text == "/" else 1
            continue
        term = _term(text)
        if term is None:
            return None
        term_factor, term_dims = term
        factor = factor * term_factor if direction == 1 else factor / term_factor
        for base, power in term_dims:
            dims[base] = dims.get(base, 0) + direction * power
    canonical = ".".join(base if p == 1 else f"{base}{p}" for base, p in sorted(dims.items()) if p != 0)
    return factor, canonical or "1"


def _scale(value: float, factor: Decimal) -> float:
    if math.isinf(value) or math.isnan(value):
        return value
    return float(Decimal(repr(value)) * factor)


def canonicalise(code: str, value: float, low: float, high: float) -> tuple[str, float, float, float] | None:
    """``(canonical code, value, low, high)`` in canonical units, or None when ``code`` has no exact
    conversion.  Same signature as ``fhir_server.search.values.CanonicalFn``.  Results are cached (one value is
    typically indexed by several parameters)."""
    key = (code, value, low, high)
    found = _converted.get(key, False)
    if found is False:
        if len(_converted) >= _CACHE_LIMIT:
            _converted.clear()
        unit = canonical_unit(code)
        found = _converted[key] = (
            None
            if unit is None
            else (unit[1], _scale(value, unit[0]), _scale(low, unit[0]), _scale(high, unit[0]))
        )
    return found  # type: ignore[return-value]

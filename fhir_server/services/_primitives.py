"""Checks for the values of FHIR R4 primitive types in JSON, compiled once from the definitions' regexes.

A check takes the JSON value and returns ``None`` when it is valid, or ``(issue code, diagnostics)``:
``structure`` when the JSON type or the lexical form is wrong, ``value`` when the form is right but the value is
not (``2020-02-30``, an integer outside 32 bits, ``positiveInt`` 0, a string over its maximum length).

Notes on the rules, all from the R4 specification:

* regexes are the ``http://hl7.org/fhir/StructureDefinition/regex`` extension of each primitive's ``.value``,
  matched in full with ASCII semantics (``\\s`` and ``\\S`` as in Java, where they were written);
  ``base64Binary``'s published regex backtracks exponentially on bad input, so an equivalent with possessive
  quantifiers is used;
* JSON strings must not be empty (the ``uri`` family's regex ``\\S*`` would allow it; the JSON format does not);
* ``boolean`` is JSON ``true``/``false``; ``integer``, ``positiveInt``, ``unsignedInt`` are JSON integers within
  32 bits; ``decimal`` is any JSON number (``int`` or :class:`~fhir_server.jsonio.FhirDecimal`; a finite
  ``float``/``Decimal`` built by application code is accepted too);
* ``date``, ``dateTime`` and ``instant`` must name a real calendar day;
* ``xhtml`` (``Narrative.div``) gets a light check, not an XHTML parse: a string holding one ``<div>`` element
  (starts with ``<div``, ends with ``</div>`` or ``/>``) whose start tag declares the XHTML namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from math import isfinite
from typing import Any

from fhir_server.definitions import Definitions
from fhir_server.jsonio import FhirDecimal

__all__ = ["Check", "Problem", "build_checks"]

Problem = tuple[str, str]  # (IssueType code, diagnostics)
Check = Callable[[Any], Problem | None]

STRUCTURE = "structure"
VALUE = "value"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
XHTML_NS = "http://www.w3.org/1999/xhtml"

# Linear-time equivalents of published regexes that backtrack catastrophically.
SAFE_REGEX = {"base64Binary": r"(?:\s*+[0-9a-zA-Z+/=]{4}\s*+)++"}
INTEGER_MINIMUM = {"integer": INT32_MIN, "unsignedInt": 0, "positiveInt": 1}
DATE_TYPES = frozenset({"date", "dateTime", "instant"})
_INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII).fullmatch
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_boolean(value: Any) -> Problem | None:
    if value is True or value is False:
        return None
    return STRUCTURE, f"expected JSON true or false for a boolean, got {_show(value)}"


def _check_decimal(value: Any) -> Problem | None:
    kind = type(value)
    if kind is int or kind is FhirDecimal:
        return None
    if kind is float or kind is Decimal:
        return None if isfinite(value) else (VALUE, f"{_show(value)} is not a finite decimal")
    return STRUCTURE, f"expected a JSON number for a decimal, got {_show(value)}"


def _integer_check(name: str) -> Check:
    minimum = INTEGER_MINIMUM[name]

    def check(value: Any) -> Problem | None:
        kind = type(value)
        if kind is int:
            if minimum <= value <= INT32_MAX:
                return None
            return VALUE, f"{value} is out of range for {name} ({minimum}..{INT32_MAX})"
        if kind is FhirDecimal and _INTEGER_TEXT(value.text):  # -0, or too big for 64 bits
            if value.text == "-0" and minimum <= 0:
                return None
            return VALUE, f"{value.text} is out of range for {name} ({minimum}..{INT32_MAX})"
        return STRUCTURE, f"expected a JSON integer for {name}, got {_show(value)}"

    return check


def _is_real_day(text: str) -> bool:
    """``text`` matched a date regex; when it has a day, is that day in its month?"""
    if len(text) < 10:
        return True
    day = int(text[8:10])
    if day <= 28:
        return True
    month = int(text[5:7])
    if month != 2:
        return day <= _DAYS_IN_MONTH[month - 1]
    year = int(text[0:4])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (29 if leap else 28)


_REMEMBERED = 4096  # valid values remembered per primitive type (the set starts again when full)
_REMEMBERED_LENGTH = 128


def _string_check(name: str, regex: str | None, max_length: int | None) -> Check:
    match = re.compile(SAFE_REGEX.get(name, regex or r".+"), re.ASCII | re.DOTALL).fullmatch
    is_date = name in DATE_TYPES
    limit = max_length or 0
    valid: set[str] = set()  # short values that passed (codes, systems, units recur in every resource)

    def check(value: Any) -> Problem | None:
        if type(value) is not str:
            return STRUCTURE, f"expected a JSON string for {name}, got {_show(value)}"
        if value in valid:
            return None
        if not value:
            return STRUCTURE, f"empty string is not a valid {name}"
        if match(value) is None:
            return STRUCTURE, f"{_show(value)} is not a valid {name}"
        if is_date and not _is_real_day(value):
            return VALUE, f"{_show(value)} is not a real calendar date"
        if limit and len(value) > limit:
            return VALUE, f"{name} is longer than {limit} characters"
        if len(value) <= _REMEMBERED_LENGTH:
            if len(valid) >= _REMEMBERED:
                valid.clear()
            valid.add(value)
        return None

    return check


def _check_xhtml(value: Any) -> Problem | None:
    if type(value) is not str:
        return STRUCTURE, f"expected a JSON string for xhtml, got {_show(value)}"
    text = value.strip()
    if not text.startswith("<div") or text[4:5] not in (" ", ">", "/", "\t", "\r", "\n"):
        return STRUCTURE, "narrative must be a single <div> element"
    if not (text.endswith("</div>") or text.endswith("/>")):
        return STRUCTURE, "narrative must be a single <div> element (no closing </div>)"
    end = text.find(">")
    if XHTML_NS not in text[: end if end > 0 else len(text)]:
        return STRUCTURE, f"narrative <div> must declare the XHTML namespace {XHTML_NS}"
    return None


def build_checks(defs: Definitions) -> dict[str, Check]:
    """A check for every primitive type of the definitions."""
    checks: dict[str, Check] = {}
    for name in sorted(defs.primitive_types):
        type_def = defs.type(name)
        if name == "boolean":
            checks[name] = _check_boolean
        elif name == "decimal":
            checks[name] = _check_decimal
        elif name in INTEGER_MINIMUM:
            checks[name] = _integer_check(name)
        elif name == "xhtml":
            checks[name] = _check_xhtml
        else:
            checks[name] = _string_check(name, type_def.regex, type_def.max_length)
    return checks

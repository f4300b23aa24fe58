"""Compile search values to conditions on one embedded index entry (pure functions).

A value compiles to a list of *alternatives* (a disjunction); each alternative is a dict of conditions on the
fields of one entry (a conjunction), used inside ``$elemMatch`` so that every condition holds for the same
entry.  Alternatives are OR'ed outside ``$elemMatch`` (some entry matching A or B is some entry matching A, or some entry matching B), which keeps each
``$elemMatch`` a plain conjunction that a compound multikey index can bound.  An empty list matches nothing.

The semantics are those of :mod:`fhir_server.search.compare` and the in-memory matcher, as in the SQLite
compiler: strings by prefix of the normalised form (``:exact`` on the text as written, ``:contains`` a substring),
dates interval against interval, numbers and quantities by the entry's value against the search value and its
implicit range, quantities in canonical units where both sides have one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from fhir_server.errors import NotSupported
from fhir_server.search.compare import date_ap_range, number_ap_range, string_prefix_bounds
from fhir_server.search.model import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

Alt = dict[str, Any]
Alts = list[Alt]

NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def regex_literal(text: str) -> str:
    """A regular expression (PCRE, as MongoDB runs it) that matches ``text`` literally."""
    out = []
    for ch in text:
        if ch == "\x00":
            out.append("\\x00")
        elif ch.isascii() and not ch.isalnum():
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def merge(a: Alt, b: Alt) -> Alt:
    """Both conjunctions at once: operator documents on the same field are combined, anything else that
    collides goes into ``$and``."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if (
            isinstance(mine, dict) and isinstance(value, dict) and not set(mine) & set(value)
            and all(k.startswith("$") for k in (*mine, *value))
        ):
            out[key] = {**mine, **value}
        else:
            out.setdefault("$and", []).append({key: value})
    return out


def conj(*parts: Alts) -> Alts:
    """The conjunction of disjunctions, distributed back into a disjunction."""
    result: Alts = [{}]
    for part in parts:
        result = [merge(a, b) for a, b in itertools.product(result, part)]
    return result


def elem_match(path: str, alts: Alts) -> dict[str, Any]:
    """``∃ entry in path`` satisfying one of the alternatives."""
    if not alts:
        return NOTHING
    matches = [{path: {"$elemMatch": alt}} for alt in alts]
    return matches[0] if len(matches) == 1 else {"$or": matches}


def top_level(alts: Alts) -> dict[str, Any]:
    """Alternatives over the document's own fields (``lu``)."""
    if not alts:
        return NOTHING
    return alts[0] if len(alts) == 1 else {"$or": alts}


# -- per value type -------------------------------------------------------------------------------------------


def date_alts(v: DateValue, low: str, high: str, now: float | None = None) -> Alts:
    """Interval ``[low, high)`` of the entry against the search period ``[v.low, v.high)``."""
    inside = merge({low: {"$gte": v.low}}, {high: {"$lte": v.high}})
    match v.prefix:
        case "eq":
            return [inside]
        case "ne":
            return [{low: {"$lt": v.low}}, {high: {"$gt": v.high}}]
        case "gt":
            return [{high: {"$gt": v.high}}]
        case "lt":
            return [{low: {"$lt": v.low}}]
        case "ge":
            return [{high: {"$gt": v.high}}, inside]
        case "le":
            return [{low: {"$lt": v.low}}, inside]
        case "sa":
            return [{low: {"$gte": v.high}}]
        case "eb":
            return [{high: {"$lte": v.low}}]
        case "ap":
            ap_low, ap_high = date_ap_range(v.low, v.high, now)
            return [merge({low: {"$lt": ap_high}}, {high: {"$gt": ap_low}})]
    raise ValueError(v.prefix)


def number_alts(prefix: str, s_value: float, s_low: float, s_high: float, field: str) -> Alts:
    match prefix:
        case "eq":
            return [{field: {"$gte": s_low, "$lt": s_high}}]
        case "ne":
            return [{field: {"$lt": s_low}}, {field: {"$gte": s_high}}]
        case "gt" | "sa":
            return [{field: {"$gt": s_value}}]
        case "lt" | "eb":
            return [{field: {"$lt": s_value}}]
        case "ge":
            return [{field: {"$gte": s_value}}]
        case "le":
            return [{field: {"$lte": s_value}}]
        case "ap":
            ap_low, ap_high = number_ap_range(s_value)
            return [{field: {"$gte": ap_low, "$lte": ap_high}}]
    raise ValueError(prefix)


def _prefix_range(text: str) -> dict[str, str]:
    low, high = string_prefix_bounds(text)
    return {"$gte": low, "$lt": high}


def string_alts(modifier: str | None, v: StringValue) -> Alts:
    if modifier == "exact":
        return [{"e": v.text}]
    if modifier == "contains":
        return [{"n": {"$regex": regex_literal(v.norm)}}]
    return [{"n": _prefix_range(v.norm)}]


def token_alts(modifier: str | None, v: TokenValue) -> Alts:
    if modifier == "text":
        return [{"x": _prefix_range(v.code or "")}]
    if v.code is None and v.system is None:
        return []
    alt: Alt = {}
    if modifier == "of-type":
        alt.update(ts=v.type_system or "", tc=v.type_code or "")
    if v.code is not None:
        alt["c"] = v.code
    if v.system is not None:
        alt["s"] = v.system
    return [alt]


def quantity_alts(v: QuantityValue) -> Alts:
    direct = conj(
        [{"s": v.system}] if v.system is not None else [{}],
        [{"c": v.code}, {"u": v.code}] if v.code is not None else [{}],
        number_alts(v.prefix, float(v.value), v.low, v.high, "v"),
    )
    if v.canonical_code is not None and v.canonical_value is not None:
        # values in a convertible UCUM unit compare in canonical units; values whose unit has no canonical form
        # still match on code or unit as written
        assert v.canonical_low is not None and v.canonical_high is not None
        canonical = conj([{"cc": v.canonical_code}],
                         number_alts(v.prefix, v.canonical_value, v.canonical_low, v.canonical_high, "cv"))
        return canonical + conj([{"cc": ""}], direct)
    return direct


def reference_alts(v: ReferenceValue) -> Alts:
    alt: Alt = {}

    def add(field: str, value: str | None) -> None:
        if value is not None:
            alt[field] = value

    if v.identifier_value is not None or v.identifier_system is not None:
        add("iv", v.identifier_value)
        add("is", v.identifier_system)
    elif v.url is not None:
        add("u", v.url)
        add("v", v.version)
    else:
        add("t", v.type)
        add("i", v.id)
        add("v", v.version)
    return [alt] if alt else []


def uri_alts(modifier: str | None, v: UriValue) -> Alts:
    if modifier == "below":
        return [{"u": _prefix_range(v.uri)}]  # case-sensitive, and the index serves it
    if modifier == "above":
        return [{"u": {"$in": [v.uri[:i] for i in range(len(v.uri) + 1)]}}]
    return [{"u": v.uri}]


def value_alts(ptype: str, modifier: str | None, v: Value, now: float | None = None) -> Alts:
    """The alternatives one search value puts on one entry of its parameter's type."""
    match v:
        case StringValue():
            return string_alts(modifier, v)
        case TokenValue():
            return token_alts(modifier, v)
        case DateValue():
            return date_alts(v, "lo", "hi", now)
        case NumberValue():
            return number_alts(v.prefix, float(v.value), v.low, v.high, "v")
        case QuantityValue():
            return quantity_alts(v)
        case ReferenceValue():
            return reference_alts(v)
        case UriValue():
            return uri_alts(modifier, v)
    raise NotSupported(f"cannot search {ptype} by {type(v).__name__}")


def with_param(param: str, alts: Sequence[Alt]) -> Alts:
    return [{"p": param, **alt} for alt in alts]

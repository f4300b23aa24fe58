"""The comparison semantics of prefixes (R4 search.html#prefix), written once.

Dates are intervals on both sides: the search value's period ``[L, H)`` and the target's ``[low, high)``.
Numbers and quantities compare the target's value (a point) with the search value and its implicit precision
range ``[L, H)``.  The in-memory matcher calls these functions; the SQL compilers mirror them exactly (and the
property tests hold them to it).
"""

from __future__ import annotations

import time

AP_FRACTION = 0.1


def date_matches(prefix: str, low: float, high: float, s_low: float, s_high: float, now: float | None = None) -> bool:
    inside = s_low <= low and high <= s_high
    match prefix:
        case "eq":
            return inside
        case "ne":
            return not inside
        case "gt":
            return high > s_high
        case "lt":
            return low < s_low
        case "ge":
            return high > s_high or inside
        case "le":
            return low < s_low or inside
        case "sa":
            return low >= s_high
        case "eb":
            return high <= s_low
        case "ap":
            a_low, a_high = date_ap_range(s_low, s_high, now)
            return low < a_high and high > a_low
    raise ValueError(prefix)


def date_ap_range(s_low: float, s_high: float, now: float | None = None) -> tuple[float, float]:
    """``ap``: the search period widened by 10% of its distance from now (at least a day)."""
    current = time.time() if now is None else now
    gap = max(abs(current - s_low), abs(current - s_high)) * AP_FRACTION
    gap = max(gap, 86400.0)
    return s_low - gap, s_high + gap


def number_matches(prefix: str, value: float, s_value: float, s_low: float, s_high: float) -> bool:
    match prefix:
        case "eq":
            return s_low <= value < s_high
        case "ne":
            return not s_low <= value < s_high
        case "gt" | "sa":
            return value > s_value
        case "lt" | "eb":
            return value < s_value
        case "ge":
            return value >= s_value
        case "le":
            return value <= s_value
        case "ap":
            a_low, a_high = number_ap_range(s_value)
            return a_low <= value <= a_high
    raise ValueError(prefix)


def number_ap_range(s_value: float) -> tuple[float, float]:
    gap = abs(s_value) * AP_FRACTION
    return s_value - gap, s_value + gap


def string_prefix_bounds(norm: str) -> tuple[str, str]:
    """``norm`` starts-with as a half-open range of strings."""
    return norm, norm + "\U0010ffff"

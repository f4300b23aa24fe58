"""``jsonio.plain``: the in-memory twin of ``loads(orjson.dumps(value))`` (how the HL7 inbound path hands its
mapped Bundle to the bundle service without writing and re-reading it)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import jsonio
from fhir_server.jsonio import FhirDecimal

_NUMBER_TEXT = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,12})?(e-?[1-9][0-9]?)?", fullmatch=True)
_LEAVES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), _NUMBER_TEXT.map(lambda t: orjson.Fragment(t)),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=25,
)


def _shape(value: Any) -> Any:
    """The value with every number's type and exact text made visible (Decimal equality ignores spelling)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, FhirDecimal):
        return ("decimal", value.text)
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_plain_is_loads_of_dumps(value: Any) -> None:
    try:
        expected = jsonio.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        with pytest.raises(TypeError):
            jsonio.plain(value)
        return
    got = jsonio.plain(value)
    assert _shape(got) == _shape(expected)
    assert jsonio.dumps(got) == jsonio.dumps(expected)


def test_plain_copies_containers_and_refuses_what_orjson_refuses() -> None:
    inner = {"a": [1, {"b": "c"}]}
    source = {"x": inner, "y": (orjson.Fragment("72.50"), True, None)}
    copy = jsonio.plain(source)
    assert copy == {"x": {"a": [1, {"b": "c"}]}, "y": [FhirDecimal("72.50"), True, None]}
    assert str(copy["y"][0]) == "72.50" and isinstance(copy["y"][0], FhirDecimal)
    assert copy["x"] is not inner and copy["x"]["a"] is not inner["a"]
    copy["x"]["a"][1]["b"] = "changed"
    assert inner["a"][1]["b"] == "c"
    with pytest.raises(TypeError):
        jsonio.plain({"when": object()})
    with pytest.raises(TypeError):
        jsonio.plain({1: "non-string key"})

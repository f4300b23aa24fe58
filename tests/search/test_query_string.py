"""Splitting query strings and search values: the fast paths for text with nothing to decode or unescape give
exactly what the general code gives."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search.model import TokenValue
from fhir_server.search.parse import parse_query_string
from fhir_server.search.values import split_unescaped, token_value, unescape

CASES = ["", "a", "a=", "=b", "a=1&&b=2", "a=1&b", "a==b", "&&", "x=y=z&q", "identifier=urn:x|1&_count=2",
         "a;b=1", "name=a,b", "name=J%C3%B6rg", "given=a+b", "code=http://loinc.org|1234-5&status=final",
         "identifier=urn:oid:1.2\\|3|v"]


@pytest.mark.parametrize("qs", CASES)
def test_same_as_parse_qsl(qs: str) -> None:
    assert parse_query_string(qs) == parse_qsl(qs, keep_blank_values=True)


@given(st.text(alphabet="ab=&|:%2B+;,\\é ", max_size=30))
def test_same_as_parse_qsl_for_any_string(qs: str) -> None:
    assert parse_query_string(qs) == parse_qsl(qs, keep_blank_values=True)


@pytest.mark.parametrize(("raw", "parts"), [
    ("urn:sys|code", ["urn:sys", "code"]),
    ("a\\|b|c", ["a\\|b", "c"]),
    ("plain", ["plain"]),
    ("|", ["", ""]),
    ("x\\\\|y", ["x\\\\", "y"]),
])
def test_split_unescaped_keeps_escapes_for_unescape(raw: str, parts: list[str]) -> None:
    assert split_unescaped(raw, "|") == parts


def test_unescape() -> None:
    assert unescape("plain") == "plain"
    assert unescape("a\\|b\\,c\\$d\\\\e") == "a|b,c$d\\e"
    assert unescape("keep\\x") == "keep\\x"
    assert token_value("urn:sys|a\\|b") == TokenValue("urn:sys", "a|b")

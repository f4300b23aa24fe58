"""``parse_query_string`` is ``parse_qsl(..., keep_blank_values=True)`` (it only skips decoding what needs none)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.search.parse import parse_query_string

_PIECES = st.sampled_from(["a", "identifier", "=", "&", "%", "%3A", "%7C", "%7c", "%C3%A9", "%FF", "%2", "+", "|",
                           ":", "é", " ", ";", "x=y", "%26", "%3D", ""])


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_parse_query_string_is_parse_qsl(query: str) -> None:
    assert parse_query_string(query) == parse_qsl(query, keep_blank_values=True)

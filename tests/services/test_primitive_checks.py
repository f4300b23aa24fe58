"""A primitive check remembers values it passed: asking again gives exactly what a fresh check gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.definitions import load_definitions
from fhir_server.services._primitives import build_checks

DEFS = load_definitions()
_TYPES = ["string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "date", "dateTime", "instant", "time",
          "markdown", "base64Binary"]
_SAMPLES = st.one_of(
    st.text(max_size=20), st.sampled_from(["final", "2024-02-29", "2023-02-29", "2024-01-05T11:00:00+01:00",
                                           "urn:uuid:6a5f9a47-2a4f-4a8e-9f5e-0d6f3b1d2c01", "a b", " ", "x" * 70,
                                           "urn:oid:1.2.3", "12:30:00", "aGVsbG8=", "http://loinc.org"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_TYPES), _SAMPLES), min_size=1, max_size=12))
def test_remembered_results_equal_fresh_ones(calls: list[tuple[str, str]]) -> None:
    used = build_checks(DEFS)
    for type_code, value in calls + calls:  # every value twice: the second answer may come from the memory
        assert used[type_code](value) == build_checks(DEFS)[type_code](value), (type_code, value)

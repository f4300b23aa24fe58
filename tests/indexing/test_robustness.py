"""Extraction never raises: on every official example, and on the same examples with their values mangled
(wrong JSON types, nulls in arrays, objects where strings belong), as a malformed or hostile body might be
before validation rejects it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.indexing.entries import IndexEntries
from fhir_server.jsonio import FhirDecimal
from tests.indexing._corpus import examples
from tests.indexing._helpers import indexer

_FIELDS = ("strings", "tokens", "dates", "numbers", "quantities", "references", "uris", "composites")


def _count(entries: IndexEntries) -> int:
    return sum(len(getattr(entries, name)) for name in _FIELDS)


def test_every_example_extracts() -> None:
    ix = indexer()
    total = 0
    for _name, resource in examples():
        total += _count(ix.extract(resource))
    assert total > 100_000  # the corpus is indexed, not silently skipped


def _swap_types(value: Any, key: str = "") -> Any:
    """Strings become numbers, numbers strings, booleans lists; keys kept."""
    if key == "resourceType":
        return value
    if isinstance(value, dict):
        return {k: _swap_types(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_types(v) for v in value]
    if isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        return FhirDecimal("1e999999999") if len(value) % 2 else len(value)
    if isinstance(value, int | Decimal):
        return str(value)
    return value


def _hollow(value: Any, key: str = "") -> Any:
    """Objects become strings below the top level; arrays gain nulls; primitives become objects."""
    if key == "resourceType":
        return value
    if isinstance(value, dict):
        return {k: ("oops" if isinstance(v, dict) and k in ("code", "period", "subject") else _hollow(v, k))
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [None, *(_hollow(v) for v in value), {}]
    if isinstance(value, str):
        return {"value": value, "reference": 7, "start": [], "coding": "x"}
    return value


def _wrong_strings(value: Any, key: str = "") -> Any:
    """Every string becomes a plausible-but-wrong value of another kind."""
    if key == "resourceType":
        return value
    if isinstance(value, dict):
        return {k: _wrong_strings(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrong_strings(v) for v in value]
    if isinstance(value, str):
        return ["2020-13-45T99:99", "#missing", "http://x/Patient", "urn:uuid:", "", "10*999999/m[Hg]", "Ñ"][
            len(value) % 7
        ]
    return value


@pytest.mark.parametrize("mangle", [_swap_types, _hollow, _wrong_strings])
def test_mangled_examples_never_raise(mangle: Any) -> None:
    ix = indexer()
    for _name, resource in examples()[::2]:  # every other example keeps the suite quick
        ix.extract(mangle(resource))
    for unit in ("10*999999999", "m999999999"):
        observation = {"resourceType": "Observation",
                       "valueQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": unit}}  # fmt: skip
        [entry] = [e for e in ix.extract(observation).quantities if e.param == "value-quantity"]
        assert entry.canonical_code is None

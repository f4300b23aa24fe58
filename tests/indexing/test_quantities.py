"""Number and quantity parameters: implicit precision ranges, UCUM canonical units, Money, Range, comparators."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from fhir_server.indexing._norm_number import number_range
from fhir_server.indexing._ucum import canonical_unit
from fhir_server.indexing.entries import NumberEntry, QuantityEntry
from fhir_server.jsonio import FhirDecimal
from tests.indexing._helpers import entries, load

UCUM = "http://unitsofmeasure.org"


def test_observation_value_quantity_with_precision_and_canonical_unit() -> None:
    observation = load(
        '{"resourceType": "Observation", "valueQuantity": '
        '{"value": 5.40, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}'
    )
    [entry] = entries(observation, "value-quantity")
    assert isinstance(entry, QuantityEntry)
    assert (entry.value, entry.low, entry.high) == (5.4, 5.395, 5.405)
    assert (entry.system, entry.code, entry.unit) == (UCUM, "mg", "mg")
    assert entry.canonical_code == "g"
    assert (entry.canonical_value, entry.canonical_low, entry.canonical_high) == (0.0054, 0.005395, 0.005405)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", (100.0, 99.5, 100.5)),
        ("100.00", (100.0, 99.995, 100.005)),
        ("1e2", (100.0, 50.0, 150.0)),
        ("1.5E3", (1500.0, 1450.0, 1550.0)),
        ("0.001", (0.001, 0.0005, 0.0015)),
        ("-2.5", (-2.5, -2.55, -2.45)),
    ],
)
def test_implicit_precision_ranges(text: str, expected: tuple[float, float, float]) -> None:
    assert number_range(FhirDecimal(text)) == expected


def test_integers_floats_and_non_numbers() -> None:
    assert number_range(3) == (3.0, 2.5, 3.5)
    assert number_range(2.25) == (2.25, 2.245, 2.255)
    assert number_range(True) is None
    assert number_range("5") is None


@pytest.mark.parametrize(
    ("code", "factor", "canonical"),
    [
        ("g", "1", "g"), ("kg", "1000", "g"), ("mg", "0.001", "g"), ("ug", "0.000001", "g"),
        ("[lb_av]", "453.59237", "g"), ("m", "1", "m"), ("cm", "0.01", "m"), ("mm", "0.001", "m"),
        ("km", "1000", "m"), ("[in_i]", "0.0254", "m"), ("L", "0.001", "m3"), ("mL", "0.000001", "m3"),
        ("dL", "0.0001", "m3"), ("s", "1", "s"), ("min", "60", "s"), ("h", "3600", "s"), ("d", "86400", "s"),
        ("wk", "604800", "s"), ("a", "31557600", "s"), ("mol", "1", "mol"), ("mmol", "0.001", "mol"),
        ("umol", "0.000001", "mol"), ("mg/dL", "10", "g.m-3"), ("mmol/L", "1", "m-3.mol"),
        ("kg/m2", "1000", "g.m-2"), ("10*3/uL", "1000000000000", "m-3"), ("%", "0.01", "1"), ("{score}", "1", "1"),
    ],
)  # fmt: skip
def test_ucum_table(code: str, factor: str, canonical: str) -> None:
    assert canonical_unit(code) == (Decimal(factor), canonical)


@pytest.mark.parametrize("code", ["Cel", "[degF]", "mm[Hg]", "U/L", "[iU]", "meq/L", "(mg)", "mg L", ""])
def test_units_without_exact_conversion(code: str) -> None:
    assert canonical_unit(code) is None


def test_non_ucum_quantity_is_not_canonicalised() -> None:
    observation = load(
        '{"resourceType": "Observation", "valueQuantity": {"value": 7, "unit": "mg", "code": "mg"}}'
    )
    assert entries(observation, "value-quantity") == [
        QuantityEntry("value-quantity", 7.0, 6.5, 7.5, None, "mg", "mg")
    ]


def test_comparator_opens_the_range() -> None:
    observation = load(
        '{"resourceType": "Observation", "valueQuantity": '
        '{"value": 5, "comparator": "<", "system": "http://unitsofmeasure.org", "code": "g"}}'
    )
    [entry] = entries(observation, "value-quantity")
    assert isinstance(entry, QuantityEntry)
    assert (entry.value, entry.low, entry.high) == (5.0, -math.inf, 5.5)
    assert (entry.canonical_low, entry.canonical_high) == (-math.inf, 5.5)


def test_money_is_a_quantity_in_its_currency() -> None:
    charge = load('{"resourceType": "ChargeItem", "priceOverride": {"value": 40.00, "currency": "EUR"}}')
    assert entries(charge, "price-override") == [
        QuantityEntry("price-override", 40.0, 39.995, 40.005, "urn:iso:std:iso:4217", "EUR", "EUR")
    ]


def test_age_and_range_for_condition_onset() -> None:
    age = load(
        '{"resourceType": "Condition", "onsetAge": '
        '{"value": 52, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}}'
    )
    [entry] = entries(age, "onset-age")
    assert isinstance(entry, QuantityEntry)
    assert (entry.value, entry.code, entry.canonical_code, entry.canonical_value) == (
        52.0,
        "a",
        "s",
        52 * 31557600.0,
    )
    span = load(
        '{"resourceType": "Condition", "onsetRange": {'
        '"low": {"value": 40, "system": "http://unitsofmeasure.org", "code": "a"},'
        '"high": {"value": 50, "system": "http://unitsofmeasure.org", "code": "a"}}}'
    )
    [entry] = entries(span, "onset-age")
    assert isinstance(entry, QuantityEntry)
    assert (entry.value, entry.low, entry.high, entry.code) == (40.0, 39.5, 50.5, "a")
    open_range = load('{"resourceType": "Condition", "onsetRange": {"high": {"value": 18, "code": "a"}}}')
    [entry] = entries(open_range, "onset-age")
    assert isinstance(entry, QuantityEntry)
    assert (entry.value, entry.low, entry.high) == (18.0, -math.inf, 18.5)


def test_number_parameters() -> None:
    assessment = load('{"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.02}]}')
    assert entries(assessment, "probability") == [NumberEntry("probability", 0.02, 0.015, 0.025)]
    ranged = load(
        '{"resourceType": "RiskAssessment", "prediction": [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}}]}'
    )
    assert entries(ranged, "probability") == [NumberEntry("probability", 0.1, 0.05, 0.35)]
    sequence = {"resourceType": "MolecularSequence", "variant": [{"start": 128, "end": 129}]}
    assert entries(sequence, "variant-start") == [NumberEntry("variant-start", 128.0, 127.5, 128.5)]


def test_sampled_data_and_missing_values_give_nothing() -> None:
    sampled = {
        "resourceType": "Observation",
        "valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1},
    }
    assert entries(sampled, "value-quantity") == []
    assert entries({"resourceType": "Observation", "valueQuantity": {"unit": "mg"}}, "value-quantity") == []

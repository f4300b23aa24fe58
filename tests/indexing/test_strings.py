"""String parameters: normalisation and the parts of HumanName and Address."""

from __future__ import annotations

import pytest

from fhir_server.indexing.entries import StringEntry
from fhir_server.indexing.extract import normalise_string
from tests.indexing._helpers import entries


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("Ñúñez", "nunez"),
        ("  Van   der\tBerg ", "van der berg"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("ﬁnn", "finn"),
        ("Zoë Ångström", "zoe angstrom"),
        ("ÇA", "ca"),
    ],
)
def test_normalise_string(text: str, norm: str) -> None:
    assert normalise_string(text) == norm


def test_patient_name_indexes_every_part() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Ñúñez", "given": ["José", "María"], "prefix": ["Dr."], "suffix": ["Jr"],
                  "text": "Dr. José María Ñúñez Jr"}],
    }  # fmt: skip
    assert entries(patient, "name") == [
        StringEntry("name", "nunez", "Ñúñez"),
        StringEntry("name", "jose", "José"),
        StringEntry("name", "maria", "María"),
        StringEntry("name", "dr.", "Dr."),
        StringEntry("name", "jr", "Jr"),
        StringEntry("name", "dr. jose maria nunez jr", "Dr. José María Ñúñez Jr"),
    ]
    assert entries(patient, "family") == [StringEntry("family", "nunez", "Ñúñez")]
    assert [e.exact for e in entries(patient, "given")] == ["José", "María"]  # type: ignore[union-attr]


def test_address_parts_and_single_field_params() -> None:
    patient = {
        "resourceType": "Patient",
        "address": [{"line": ["1 Main St", "Apt 2"], "city": "Springfield", "district": "Clark", "state": "IL",
                     "postalCode": "62701", "country": "US", "text": "1 Main St, Springfield"}],
    }  # fmt: skip
    assert [e.norm for e in entries(patient, "address")] == [  # type: ignore[union-attr]
        "1 main st", "apt 2", "springfield", "clark", "il", "62701", "us", "1 main st, springfield",
    ]  # fmt: skip
    assert entries(patient, "address-city") == [StringEntry("address-city", "springfield", "Springfield")]
    assert entries(patient, "address-postalcode") == [StringEntry("address-postalcode", "62701", "62701")]


def test_plain_string_and_duplicates_removed() -> None:
    org = {"resourceType": "Organization", "name": "St. Mary's", "alias": ["St. Mary's", "SMH"]}
    assert entries(org, "name") == [
        StringEntry("name", "st. mary's", "St. Mary's"),
        StringEntry("name", "smh", "SMH"),
    ]


def test_blank_and_malformed_values_give_nothing() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "   ", "given": [None, 7, "Ann"]}, "oops"]}
    assert entries(patient, "name") == [StringEntry("name", "ann", "Ann")]


def test_value_string_takes_string_and_codeable_concept_text() -> None:
    # (Observation.value as CodeableConcept).text | (Observation.value as string)
    observation = {"resourceType": "Observation", "valueCodeableConcept": {"text": "Positive"}}
    assert entries(observation, "value-string") == [StringEntry("value-string", "positive", "Positive")]
    observation = {"resourceType": "Observation", "valueString": "Trace amounts"}
    assert entries(observation, "value-string") == [
        StringEntry("value-string", "trace amounts", "Trace amounts")
    ]

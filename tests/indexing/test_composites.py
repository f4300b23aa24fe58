"""Composite parameters: one entry per selected element, components evaluated within that element."""

from __future__ import annotations

from typing import Any

from fhir_server.indexing.entries import CompositeEntry, QuantityEntry, ReferenceEntry, TokenEntry, UriEntry
from tests.indexing._helpers import entries, load

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _blood_pressure() -> dict[str, Any]:
    return load(
        """{"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
               "valueQuantity": {"value": 107, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                 "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
               "valueQuantity": {"value": 60, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                 "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": "http://loinc.org", "code": "8478-0"}]}}
            ]}"""
    )


def _mmhg(param: str, value: float) -> QuantityEntry:
    return QuantityEntry(param, value, value - 0.5, value + 0.5, UCUM, "mm[Hg]", "mmHg")


def test_component_code_value_quantity_on_blood_pressure() -> None:
    found = entries(_blood_pressure(), "component-code-value-quantity")
    assert found == [
        CompositeEntry(
            "component-code-value-quantity",
            ((TokenEntry("component-code", LOINC, "8480-6"),), (_mmhg("component-value-quantity", 107.0),)),
        ),
        CompositeEntry(
            "component-code-value-quantity",
            ((TokenEntry("component-code", LOINC, "8462-4"),), (_mmhg("component-value-quantity", 60.0),)),
        ),
    ]  # the third component has no value, so it cannot match and gives no entry


def test_combo_takes_the_observation_and_its_components() -> None:
    observation = _blood_pressure()
    assert entries(observation, "combo-code-value-quantity") == [
        CompositeEntry(
            "combo-code-value-quantity",
            ((TokenEntry("combo-code", LOINC, "8480-6"),), (_mmhg("combo-value-quantity", 107.0),)),
        ),
        CompositeEntry(
            "combo-code-value-quantity",
            ((TokenEntry("combo-code", LOINC, "8462-4"),), (_mmhg("combo-value-quantity", 60.0),)),
        ),
    ]
    observation["valueQuantity"] = {"value": 1, "system": UCUM, "code": "mm[Hg]"}
    first = entries(observation, "combo-code-value-quantity")[0]
    assert first == CompositeEntry(
        "combo-code-value-quantity",
        (
            (TokenEntry("combo-code", LOINC, "85354-9"),),
            (QuantityEntry("combo-value-quantity", 1.0, 0.5, 1.5, UCUM, "mm[Hg]", None),),
        ),
    )


def test_code_value_quantity_uses_the_root_code_and_value() -> None:
    observation = load(
        """{"resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "valueQuantity": {"value": 6.3, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                              "code": "mmol/L"}}"""
    )
    [entry] = entries(observation, "code-value-quantity")
    assert isinstance(entry, CompositeEntry)
    (code,), (value,) = entry.components
    assert code == TokenEntry("code", LOINC, "2345-7", "glucose")
    assert isinstance(value, QuantityEntry)
    assert (value.param, value.value, value.canonical_code, value.canonical_value) == (
        "value-quantity",
        6.3,
        "m-3.mol",
        6.3,
    )


def test_use_context_type_and_value() -> None:
    value_set = {
        "resourceType": "ValueSet",
        "useContext": [
            {"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
             "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "394587001"}]}},
        ],
    }  # fmt: skip
    assert entries(value_set, "context-type-value") == [
        CompositeEntry(
            "context-type-value",
            (
                (
                    TokenEntry(
                        "context-type", "http://terminology.hl7.org/CodeSystem/usage-context-type", "focus"
                    ),
                ),
                (TokenEntry("context", "http://snomed.info/sct", "394587001"),),
            ),
        )
    ]
    assert entries(value_set, "context-type-quantity") == []


def test_document_reference_relationship_pairs_components_by_their_definitions() -> None:
    # R4 erratum: the definition pairs relatesto (reference) with "code" and relation (token) with "target"
    document = {
        "resourceType": "DocumentReference",
        "relatesTo": [{"code": "appends", "target": {"reference": "DocumentReference/d0"}}],
    }
    assert entries(document, "relationship") == [
        CompositeEntry(
            "relationship",
            (
                (ReferenceEntry("relatesto", "DocumentReference", "d0"),),
                (TokenEntry("relation", "http://hl7.org/fhir/document-relationship-type", "appends"),),
            ),
        )
    ]


def test_percent_resource_in_components() -> None:
    sequence = {
        "resourceType": "MolecularSequence",
        "referenceSeq": {"chromosome": {"coding": [{"system": "http://x.example/chr", "code": "1"}]}},
        "variant": [{"start": 10, "end": 11}],
    }
    [entry] = entries(sequence, "chromosome-variant-coordinate")
    assert isinstance(entry, CompositeEntry)
    assert entry.components[0] == (TokenEntry("chromosome", "http://x.example/chr", "1"),)
    assert [e.param for part in entry.components for e in part] == [
        "chromosome",
        "variant-start",
        "variant-end",
    ]


def test_uri_parameters() -> None:
    resource = {"resourceType": "Patient", "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
                                                    "source": "http://lab.example/feed#42"}}  # fmt: skip
    assert entries(resource, "_profile") == [
        UriEntry("_profile", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
    ]
    assert entries(resource, "_source") == [UriEntry("_source", "http://lab.example/feed#42")]
    value_set = {"resourceType": "ValueSet", "url": "http://hl7.org/fhir/ValueSet/administrative-gender"}
    assert entries(value_set, "url") == [
        UriEntry("url", "http://hl7.org/fhir/ValueSet/administrative-gender")
    ]

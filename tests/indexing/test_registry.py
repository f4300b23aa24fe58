"""The Indexer's registry: applicable parameters, what is not extracted, run-time parameters, the fallback."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.definitions import load_definitions
from fhir_server.indexing.entries import StringEntry, TokenEntry
from fhir_server.indexing.extract import Indexer, SearchParam, search_param_from_resource
from tests.indexing._helpers import indexer


def _fresh() -> Indexer:
    return Indexer.from_definitions(load_definitions())


def test_params_for_includes_resource_and_domain_resource_params() -> None:
    patient = indexer().params_for("Patient")
    for code in (
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
        "_text",
        "_content",
        "name",
    ):
        assert code in patient
    bundle = indexer().params_for("Bundle")
    assert "_tag" in bundle and "_text" not in bundle  # Bundle is a Resource, not a DomainResource
    assert indexer().params_for("NoSuchType") == {}


def test_store_and_special_params_are_not_extracted() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
               "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"}}  # fmt: skip
    params = indexer().params_for("Patient")
    for code in ("_id", "_lastUpdated", "_text", "_content"):
        assert not params[code].indexed
        assert indexer().extract_param(patient, params[code]) == []
    assert not indexer().params_for("Location")["near"].indexed
    assert "_id" not in indexer().compiled("Patient")


def test_extract_collects_every_parameter_by_type() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "male", "birthDate": "1970"}
    entries = indexer().extract(patient)
    assert {e.param for e in entries.strings} == {"name", "family", "phonetic"}
    assert {e.param for e in entries.tokens} == {"gender", "deceased"}
    assert [e.param for e in entries.dates] == ["birthdate"]
    assert indexer().extract({"resourceType": "NoSuchType"}).tokens == []


def test_search_param_from_resource() -> None:
    resource: dict[str, Any] = {
        "resourceType": "SearchParameter",
        "url": "https://infirmary.example/fhir/SearchParameter/patient-nickname",
        "name": "nickname",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use = 'nickname').given",
        "modifier": ["exact", "contains"],
        "multipleOr": True,
    }
    param = search_param_from_resource(resource)
    assert param == SearchParam(
        code="nickname", type="string", base=("Patient",), expression="Patient.name.where(use = 'nickname').given",
        url=resource["url"], name="nickname", modifiers=("exact", "contains"), multiple_or=True,
    )  # fmt: skip
    assert search_param_from_resource({"code": "x", "type": "special", "base": "Patient"}).base == (
        "Patient",
    )


def test_added_param_takes_effect_at_once() -> None:
    ix = _fresh()
    param = SearchParam(
        "nickname", "string", ("Patient",), "Patient.name.where(use='nickname').given", "urn:x:nick"
    )
    patient = {
        "resourceType": "Patient",
        "name": [{"use": "nickname", "given": ["Bob"]}, {"given": ["Robert"]}],
    }
    assert "nickname" not in ix.params_for("Patient")
    ix.add(param)
    assert ix.params_for("Patient")["nickname"] is param
    assert [e for e in ix.extract(patient).strings if e.param == "nickname"] == [
        StringEntry("nickname", "bob", "Bob")
    ]
    assert ix.by_url("urn:x:nick|1.0") is param


def test_added_param_replaces_one_with_the_same_code() -> None:
    ix = _fresh()
    ix.add(SearchParam("gender", "token", ("Patient",), "Patient.name.family", "urn:x:gender"))
    patient = {"resourceType": "Patient", "gender": "male", "name": [{"family": "Doe"}]}
    assert [e for e in ix.extract(patient).tokens if e.param == "gender"] == [
        TokenEntry("gender", None, "Doe")
    ]


def test_resource_level_custom_param_applies_to_every_type() -> None:
    ix = _fresh()
    ix.add(
        SearchParam("tag-display", "string", ("Resource",), "Resource.meta.tag.display", "urn:x:tagdisplay")
    )
    for resource_type in ("Patient", "Bundle", "Observation"):
        resource = {"resourceType": resource_type, "meta": {"tag": [{"display": "Imported"}]}}
        assert ix.extract(resource).strings == [StringEntry("tag-display", "imported", "Imported")]


def test_invalid_expression_is_refused_and_changes_nothing() -> None:
    ix = _fresh()
    broken = SearchParam("broken", "string", ("Patient",), "Patient.name.", "urn:x:broken")
    with pytest.raises(ValueError, match="invalid FHIRPath"):
        Indexer.check(broken)
    with pytest.raises(ValueError, match="invalid FHIRPath"):
        ix.add(broken)
    assert "broken" not in ix.params_for("Patient")
    Indexer.check(
        SearchParam("fine", "string", ("Patient",), "Patient.name.where(given.count() > 1)", "urn:x")
    )
    bad_component = SearchParam("c", "composite", ("Observation",), "Observation", "urn:x:c",
                                components=(("urn:x:code", "code"), ("urn:x:value", "value.as(")))  # fmt: skip
    with pytest.raises(ValueError):
        Indexer.check(bad_component)


def test_types_of() -> None:
    ix = indexer()
    params = ix.params_for("Observation")
    assert ix.types_of(params["value-quantity"]) == ["Observation"]
    assert len(ix.types_of(params["_tag"])) == len(load_definitions().resource_types)
    assert "Bundle" not in ix.types_of(indexer().params_for("Patient")["_text"])
    patient_param = ix.params_for("Observation")["patient"]  # clinical-patient: many bases
    assert {"Observation", "Condition", "Encounter"} <= set(ix.types_of(patient_param))


@pytest.mark.parametrize(
    ("expression", "kind", "expected"),
    [
        ("Patient.name.first().family.substring(0, 1)", "string", ["d"]),
        ("Patient.name.where(given.count() > 1).family", "string", ["doe"]),
        ("Patient.name.select(given.first())", "string", ["ann", "bo"]),
    ],
)
def test_fallback_evaluates_what_the_compiler_cannot(expression: str, kind: str, expected: list[str]) -> None:
    ix = _fresh()
    ix.add(SearchParam("custom", kind, ("Patient",), expression, "urn:x:custom"))
    assert ("Patient", "custom") in ix.fallbacks()
    patient = {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Ann", "Bea"]},
                                                   {"family": "Roe", "given": ["Bo"]}]}  # fmt: skip
    assert [e.norm for e in ix.extract(patient).strings if e.param == "custom"] == expected


def test_fallback_errors_select_nothing() -> None:
    ix = _fresh()
    ix.add(SearchParam("single", "string", ("Patient",), "Patient.name.family.single()", "urn:x:single"))
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}, {"family": "Roe"}]}
    assert ix.extract(patient).strings[-1].param != "single"  # fhirpathpy raises: not a singleton
    assert [e.norm for e in ix.extract({"resourceType": "Patient", "name": [{"family": "Doe"}]}).strings
            if e.param == "single"] == ["doe"]  # fmt: skip


def test_core_parameters_compile_without_unknown_elements() -> None:
    notes = indexer().notes
    assert not [note for note in notes if "no element" in note]
    assert indexer().fallbacks() == []

"""The path compiler on the FHIRPath forms it handles (selected values and their static types), and the parser."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from fhir_server.definitions import load_definitions
from fhir_server.indexing._fp_parse import Binary, Call, Ident, Literal, Member, TypeName, Unsupported, parse
from fhir_server.indexing.extract import Indexer, SearchParam

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Lyon"},
        },
        {"url": "http://example.org/other", "valueString": "x"},
    ],
    "name": [
        {"use": "official", "family": "Doe", "given": ["Ann", "Bea"]},
        {"use": "nickname", "given": ["Annie"]},
    ],
    "deceasedDateTime": "2020-01-01",
    "contained": [{"resourceType": "Organization", "id": "o1", "name": "Clinic"}],
    "managingOrganization": {"reference": "#o1"},
}


@cache
def _indexer() -> Indexer:
    return Indexer.from_definitions(load_definitions())


def _select(
    expression: str, resource: dict[str, Any] = PATIENT, kind: str = "string"
) -> list[tuple[Any, str | None]]:
    ix = _indexer()
    code = f"t{abs(hash((expression, kind)))}"
    ix.add(SearchParam(code, kind, (resource["resourceType"],), expression, f"urn:test:{code}"))
    compiled = ix.compiled(resource["resourceType"]).get(code)
    if compiled is None:  # selects nothing on this type (unknown elements, other types' paths)
        return []
    assert compiled.fallback is None, f"{expression} fell back to fhirpathpy"
    return compiled.select(resource)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Patient.name.family", [("Doe", "string")]),
        ("name.given", [("Ann", "string"), ("Bea", "string"), ("Annie", "string")]),
        ("Patient.name.where(use = 'official').given", [("Ann", "string"), ("Bea", "string")]),
        ("Patient.name.where(use = 'official' or use = 'nickname').given.count()", [(3, "integer")]),
        ("Patient.name[1].given", [("Annie", "string")]),
        ("Patient.name.given.first()", [("Ann", "string")]),
        ("Patient.name.given.last()", [("Annie", "string")]),
        ("Patient.name.given.tail().take(1)", [("Bea", "string")]),
        ("Patient.name.given.skip(2)", [("Annie", "string")]),
        ("Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.city",
         [("Lyon", "string")]),
        ("Patient.extension.where(url = 'http://example.org/other').value", [("x", "string")]),
        ("Patient.deceased", [("2020-01-01", "dateTime")]),
        ("Patient.deceased.ofType(boolean)", []),
        ("(Patient.deceased as dateTime)", [("2020-01-01", "dateTime")]),
        ("Patient.deceased is dateTime", [(True, "boolean")]),
        ("Patient.deceased.exists() and Patient.deceased != false", [(True, "boolean")]),
        ("Patient.name.family.empty()", [(False, "boolean")]),
        ("Patient.name.given.exists($this = 'Bea')", [(True, "boolean")]),
        ("Patient.multipleBirth.exists().not()", [(True, "boolean")]),
        ("Patient.contained.ofType(Organization).name", [("Clinic", "string")]),
        ("Patient.contained.ofType(Practitioner).name", []),
        ("Patient.managingOrganization.where(resolve() is Organization).reference", [("#o1", "string")]),
        ("Observation.code | Patient.id", [("p1", "id")]),
        ("Resource.id | DomainResource.id", [("p1", "id"), ("p1", "id")]),
        ("Patient.name.where(use = %resource.name.first().use).family", [("Doe", "string")]),
        ("Patient.name.given.where($this = 'Ann' xor $this = 'Bea')", [("Ann", "string"), ("Bea", "string")]),
        ("Patient.gender implies Patient.active", []),
        ("Patient.noSuchElement", []),
    ],
)  # fmt: skip
def test_compiled_selection(expression: str, expected: list[tuple[Any, str]]) -> None:
    assert _select(expression) == expected


def test_unknown_elements_are_noted() -> None:
    _select("Patient.noSuchThing.family")
    assert any("no element 'noSuchThing' in Patient" in note for note in _indexer().notes)


def test_choice_expansion_and_subtypes() -> None:
    condition = {"resourceType": "Condition", "onsetAge": {"value": 3, "unit": "a"}}
    assert _select("Condition.onset", condition) == [({"value": 3, "unit": "a"}, "Age")]
    assert _select("Condition.onset.as(Quantity)", condition) == [({"value": 3, "unit": "a"}, "Age")]
    assert _select("Condition.onset.ofType(Range)", condition) == []
    observation = {"resourceType": "Observation", "component": [{"valueQuantity": {"value": 1}}, {"valueString": "s"},
                                                                {"valueQuantity": {"value": 2}}]}  # fmt: skip
    assert _select("Observation.component.value.as(Quantity)", observation) == [
        ({"value": 1}, "Quantity"), ({"value": 2}, "Quantity"),
    ]  # fmt: skip
    assert _select("Observation.component.value as string", observation) == [("s", "string")]


def test_bundle_entry_resources_are_typed_at_run_time() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "name": [{"family": "X"}]}},
                                                  {"resource": {"resourceType": "Organization", "name": "Y"}}]}  # fmt: skip
    assert _select("Bundle.entry.resource.ofType(Patient).name.family", bundle) == [("X", "string")]
    assert _select("Bundle.entry[0].resource is Patient", bundle) == [(True, "boolean")]


def test_malformed_data_is_skipped() -> None:
    odd = {"resourceType": "Patient", "name": ["Doe", None, {"family": 5, "given": "Ann"}, {"family": "Roe"}]}
    assert _select("Patient.name.family", odd) == [(5, "string"), ("Roe", "string")]
    assert _select("Patient.name.given", odd) == [("Ann", "string")]


def test_parser() -> None:
    assert parse("(Observation.value as Quantity)") == Binary(
        "as", Member(Ident("Observation"), "value"), TypeName("Quantity")
    )
    assert parse("a.where(b = 'x\\'y')") == Call(
        Ident("a"), "where", (Binary("=", Ident("b"), Literal("x'y")),)
    )
    assert parse("x.ofType(FHIR.Quantity)") == Call(
        Ident("x"), "ofType", (Member(Ident("FHIR"), "Quantity"),)
    )
    assert parse("a | b and c") == Binary("and", Binary("|", Ident("a"), Ident("b")), Ident("c"))
    assert parse("`div`.exists()") == Call(Ident("div"), "exists", ())


@pytest.mark.parametrize(
    "expression", ["Patient.name.", "@2020 < Patient.birthDate", "Patient.name + ", "a b"]
)
def test_parser_refuses_what_it_does_not_handle(expression: str) -> None:
    with pytest.raises(Unsupported):
        parse(expression)

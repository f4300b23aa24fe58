"""The generated R4 definitions and their loader."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fhir_server.definitions import DATA_DIR, Definitions, load_definitions
from tests.conftest_shared import REPO_ROOT, shared_dir

DATA_FILES = ("compartments.json.gz", "elements.json.gz", "search_parameters.json.gz", "valuesets.json.gz")


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return load_definitions()


def test_loading_is_fast_and_cached() -> None:
    started = time.perf_counter()
    fresh = load_definitions.__wrapped__()  # a cold load, leaving the process-wide cache alone
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"loading the definitions took {elapsed:.3f} s"
    assert fresh.resource_types == load_definitions().resource_types
    assert load_definitions() is load_definitions()


def test_data_files_are_small() -> None:
    total = sum((DATA_DIR / name).stat().st_size for name in DATA_FILES)
    assert total < 2_000_000


def test_resource_types(defs: Definitions) -> None:
    assert len(defs.resource_types) == 146
    assert defs.is_resource_type("Patient")
    assert defs.is_resource_type("Bundle")
    assert not defs.is_resource_type("DomainResource")
    assert not defs.is_resource_type("Resource")
    assert not defs.is_resource_type("HumanName")
    assert not defs.is_resource_type("patient")
    resource_types = defs.valueset("http://hl7.org/fhir/ValueSet/resource-types")
    assert resource_types is not None
    assert defs.resource_types == resource_types.codes - {"Resource", "DomainResource"}


def test_type_hierarchy(defs: Definitions) -> None:
    patient = defs.type("Patient")
    assert (patient.kind, patient.abstract, patient.base) == ("resource", False, "DomainResource")
    assert defs.type("DomainResource").abstract
    assert defs.type("Resource").base is None
    assert defs.type("Age").base == "Quantity"
    assert defs.type("positiveInt").kind == "primitive-type"
    assert defs.type("date").regex is not None
    assert defs.type("string").max_length == 1048576
    with pytest.raises(KeyError):
        defs.type("NoSuchType")


def test_summary_and_mandatory_elements(defs: Definitions) -> None:
    summary = defs.summary_elements("Patient")
    assert {
        "id",
        "meta",
        "identifier",
        "name",
        "birthDate",
        "gender",
        "deceasedBoolean",
        "deceasedDateTime",
    } <= summary
    assert not {"photo", "contact", "text", "contained", "multipleBirthBoolean"} & summary
    assert defs.mandatory_elements("Observation") == {"status", "code"}
    assert defs.mandatory_elements("MedicationRequest") == {"status", "intent", "medication[x]", "subject"}
    assert defs.mandatory_elements("Patient") == frozenset()


def test_element_rules(defs: Definitions) -> None:
    observation = defs.type("Observation").node.elements
    quantity = observation["valueQuantity"]
    assert (quantity.path, quantity.choice_of, quantity.type_code, quantity.is_array) == (
        "Observation.value[x]",
        "value",
        "Quantity",
        False,
    )
    assert quantity.node is defs.type("Quantity").node
    assert "value[x]" not in observation and "valueFoo" not in observation
    assert {"valueString", "valueCodeableConcept", "valuePeriod"} <= observation.keys()
    assert observation["status"].binding_url == "http://hl7.org/fhir/ValueSet/observation-status"
    assert observation["subject"].targets == frozenset({"Patient", "Group", "Device", "Location"})
    assert observation["focus"].targets == frozenset({"Resource"})
    assert observation["identifier"].is_array and observation["identifier"].max is None
    assert observation["id"].type_code == "id"  # Resource.id is an id, not the snapshot's System.String
    assert observation["id"].is_system

    reference_range = observation["referenceRange"]
    assert reference_range.node is not None and reference_range.node.path == "Observation.referenceRange"
    component = observation["component"].node
    assert component is not None
    assert component.elements["referenceRange"].node is reference_range.node  # contentReference

    item = defs.type("Questionnaire").node.elements["item"]
    assert item.node is not None
    assert item.node.elements["item"].content_reference == "#Questionnaire.item"
    assert item.node.elements["item"].node is item.node
    assert [m.path for m in item.node.mandatory] == ["Questionnaire.item.linkId", "Questionnaire.item.type"]
    assert item.node.mandatory[0].keys == ("linkId", "_linkId")

    extension = defs.type("Extension").node
    assert extension.elements["url"].is_system and extension.mandatory[0].keys == ("url",)
    assert len([r for r in extension.elements.values() if r.choice_of == "value"]) == 50


def test_value_sets(defs: Definitions) -> None:
    gender = defs.valueset("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert gender is not None and gender.checkable
    assert gender.codes == {"male", "female", "other", "unknown"}
    assert gender.contains("male", "http://hl7.org/fhir/administrative-gender")
    assert not gender.contains("male", "http://example.org/gender")
    assert not gender.contains("M")

    status = defs.valueset("http://hl7.org/fhir/ValueSet/observation-status")
    assert status is not None
    assert status.codes == {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
    clinical = defs.valueset("http://hl7.org/fhir/ValueSet/condition-clinical")
    assert clinical is not None and clinical.systems == {
        "http://terminology.hl7.org/CodeSystem/condition-clinical": {
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        }
    }
    # an explicit concept list is checkable although UCUM itself is not in the package
    units = defs.valueset("http://hl7.org/fhir/ValueSet/units-of-time")
    assert units is not None and units.checkable and units.codes == {"s", "min", "h", "d", "wk", "mo", "a"}
    for url in ("http://hl7.org/fhir/ValueSet/mimetypes", "http://hl7.org/fhir/ValueSet/ucum-units"):
        uncheckable = defs.valueset(url)
        assert uncheckable is not None and not uncheckable.checkable and uncheckable.reason
        assert uncheckable.contains("anything")
    assert defs.valueset("http://hl7.org/fhir/ValueSet/marital-status") is None  # extensible, not required


def test_search_parameters(defs: Definitions) -> None:
    params = defs.search_parameters
    assert len(params) == 1375
    assert len({p["url"] for p in params}) == 1375
    assert all(p["code"] and p["base"] and p["type"] for p in params)
    by_url = {p["url"]: p for p in params}
    birthdate = by_url["http://hl7.org/fhir/SearchParameter/individual-birthdate"]
    assert birthdate["code"] == "birthdate" and birthdate["type"] == "date"
    assert set(birthdate["base"]) == {"Patient", "Person", "RelatedPerson"}
    assert "Patient.birthDate" in birthdate["expression"]
    subject = by_url["http://hl7.org/fhir/SearchParameter/Observation-subject"]
    assert "Patient" in subject["target"]
    composite = by_url["http://hl7.org/fhir/SearchParameter/Observation-code-value-quantity"]
    assert composite["type"] == "composite" and len(composite["component"]) == 2
    assert set(composite["component"][0]) == {"definition", "expression"}
    assert not any(p.get("url", "").endswith("-extensions-Patient-age") for p in params)


def test_compartments(defs: Definitions) -> None:
    compartments = defs.compartments
    assert set(compartments) == {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    assert compartments["Patient"]["Observation"] == ["subject", "performer"]
    assert compartments["Patient"]["Patient"] == ["link"]
    assert "ActivityDefinition" not in compartments["Patient"]  # not in the compartment at all
    assert compartments["Encounter"]["Observation"] == ["encounter"]


def test_generator_is_deterministic_and_matches_the_committed_files(tmp_path: Path) -> None:
    root = shared_dir()
    if root is None:
        pytest.skip("../shared (the official FHIR packages) is not present beside the repository")
    package = root / "fhir" / "hl7.fhir.r4.core-4.0.1.tgz"
    script = REPO_ROOT / "scripts" / "generate_definitions.py"
    subprocess.run(
        [sys.executable, str(script), "--package", str(package), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in DATA_FILES:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), f"{name} is out of date"

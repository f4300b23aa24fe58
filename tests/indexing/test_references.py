"""Reference parameters: every form of a reference, target-type filters, canonicals, uris and resources."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.indexing.entries import ReferenceEntry
from tests.indexing._helpers import BASE, entries


def _observation(subject: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "subject": subject, **more}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", ReferenceEntry("subject", "Patient", "123")),
        ("Patient/123/_history/4", ReferenceEntry("subject", "Patient", "123", "4")),
        (f"{BASE}/Patient/123", ReferenceEntry("subject", "Patient", "123", url=f"{BASE}/Patient/123")),
        (f"{BASE}/Patient/123/_history/4",
         ReferenceEntry("subject", "Patient", "123", "4", url=f"{BASE}/Patient/123")),
        ("http://other.example/fhir/Patient/123",
         ReferenceEntry("subject", url="http://other.example/fhir/Patient/123")),
        ("urn:uuid:8e7a8e6c-6a4f-4b43-9d7e-6f1c8c1b2a10",
         ReferenceEntry("subject", url="urn:uuid:8e7a8e6c-6a4f-4b43-9d7e-6f1c8c1b2a10")),
        ("Unknown/123", None),
    ],
)  # fmt: skip
def test_literal_reference_forms(reference: str, expected: ReferenceEntry | None) -> None:
    found = entries(_observation({"reference": reference}), "subject")
    assert found == ([] if expected is None else [expected])


def test_contained_reference() -> None:
    observation = _observation({"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1"}])
    assert entries(observation, "subject") == [ReferenceEntry("subject", "Patient", url="#p1")]
    assert entries(observation, "patient") == [ReferenceEntry("patient", "Patient", url="#p1")]


def test_logical_reference_by_identifier() -> None:
    subject = {
        "type": "Patient",
        "identifier": {"system": "urn:oid:1.2.3", "value": "MRN-9"},
        "display": "Ann",
    }
    assert entries(_observation(subject), "subject") == [
        ReferenceEntry("subject", "Patient", identifier_system="urn:oid:1.2.3", identifier_value="MRN-9")
    ]
    assert entries(_observation({"display": "Ann"}), "subject") == []


def test_where_resolve_is_filters_by_target_type() -> None:
    # Observation.patient is Observation.subject.where(resolve() is Patient)
    assert entries(_observation({"reference": "Patient/1"}), "patient") == [
        ReferenceEntry("patient", "Patient", "1")
    ]
    assert entries(_observation({"reference": "Group/1"}), "patient") == []
    assert entries(_observation({"reference": "http://other.example/fhir/Patient/1"}), "patient") == [
        ReferenceEntry("patient", url="http://other.example/fhir/Patient/1")
    ]
    assert (
        entries(_observation({"reference": "urn:uuid:0d5d6d1e-0000-4000-8000-000000000001"}), "patient") == []
    )
    encounter = {
        "resourceType": "Appointment",
        "participant": [{"actor": {"reference": "Practitioner/7"}}, {"actor": {"reference": "Patient/8"}},
                        {"actor": {"reference": "Location/9"}}],
    }  # fmt: skip
    assert entries(encounter, "practitioner") == [ReferenceEntry("practitioner", "Practitioner", "7")]
    assert entries(encounter, "patient") == [ReferenceEntry("patient", "Patient", "8")]
    assert entries(encounter, "location") == [ReferenceEntry("location", "Location", "9")]
    assert len(entries(encounter, "actor")) == 3


def test_canonical_and_uri_references() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/Questionnaire/phq9|2.1",
    }
    assert entries(response, "questionnaire") == [
        ReferenceEntry("questionnaire", version="2.1", url="http://example.org/Questionnaire/phq9")
    ]
    local = {"resourceType": "QuestionnaireResponse", "questionnaire": f"{BASE}/Questionnaire/phq9"}
    assert entries(local, "questionnaire") == [
        ReferenceEntry("questionnaire", "Questionnaire", "phq9", url=f"{BASE}/Questionnaire/phq9")
    ]
    concept_map = {"resourceType": "ConceptMap", "sourceUri": "http://snomed.info/sct?fhir_vs|x"}
    assert entries(concept_map, "source-uri") == [
        ReferenceEntry("source-uri", url="http://snomed.info/sct?fhir_vs|x")
    ]


def test_related_artifact_where_type_literal() -> None:
    library = {
        "resourceType": "Library",
        "relatedArtifact": [
            {"type": "depends-on", "resource": "http://example.org/Library/helpers|1.0"},
            {"type": "composed-of", "resource": "http://example.org/Library/part"},
        ],
    }
    assert entries(library, "depends-on") == [
        ReferenceEntry("depends-on", version="1.0", url="http://example.org/Library/helpers")
    ]
    assert entries(library, "composed-of") == [
        ReferenceEntry("composed-of", url="http://example.org/Library/part")
    ]


def test_bundle_composition_is_the_first_entry_resource() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}},
                  {"resource": {"resourceType": "Patient", "id": "p1"}}],
    }  # fmt: skip
    assert entries(bundle, "composition") == [ReferenceEntry("composition", "Composition", "c1")]

"""Token parameters: Coding, CodeableConcept, Identifier (:of-type), ContactPoint, code, boolean, strings."""

from __future__ import annotations

from fhir_server.indexing.entries import TokenEntry
from tests.indexing._helpers import entries

LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def test_codeable_concept_codings_and_text() -> None:
    observation = {
        "resourceType": "Observation",
        "code": {
            "coding": [
                {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"},
                {"system": "http://snomed.info/sct", "code": "271649006"},
            ],
            "text": "Systolic BP",
        },
    }
    assert entries(observation, "code") == [
        TokenEntry("code", LOINC, "8480-6", "systolic blood pressure"),
        TokenEntry("code", "http://snomed.info/sct", "271649006"),
        TokenEntry("code", None, None, "systolic bp"),
    ]


def test_codeable_concept_text_equal_to_a_display_is_not_repeated() -> None:
    observation = {
        "resourceType": "Observation",
        "code": {
            "coding": [{"system": LOINC, "code": "8302-2", "display": "Body Height"}],
            "text": "Body height",
        },
    }
    assert entries(observation, "code") == [TokenEntry("code", LOINC, "8302-2", "body height")]


def test_identifier_with_type_for_of_type() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical record number"},
             "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"},
            {"system": "http://ns.example/ssn", "value": "999-26-2058"},
        ],
    }  # fmt: skip
    assert entries(patient, "identifier") == [
        TokenEntry(
            "identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345", "medical record number", V2_0203, "MR"
        ),
        TokenEntry("identifier", "http://ns.example/ssn", "999-26-2058"),
    ]


def test_contact_points_and_where_system_filters() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [
            {"system": "phone", "value": "+1 555 0100", "use": "home"},
            {"system": "email", "value": "ann@example.org"},
        ],
    }
    assert entries(patient, "telecom") == [
        TokenEntry("telecom", None, "+1 555 0100"),
        TokenEntry("telecom", None, "ann@example.org"),
    ]
    assert entries(patient, "phone") == [TokenEntry("phone", None, "+1 555 0100")]
    assert entries(patient, "email") == [TokenEntry("email", None, "ann@example.org")]


def test_code_gets_the_system_of_its_required_binding() -> None:
    patient = {"resourceType": "Patient", "gender": "female"}
    assert entries(patient, "gender") == [
        TokenEntry("gender", "http://hl7.org/fhir/administrative-gender", "female")
    ]
    # a code not in the bound value set keeps no system
    assert entries({"resourceType": "Patient", "gender": "robot"}, "gender") == [
        TokenEntry("gender", None, "robot")
    ]


def test_boolean_tokens() -> None:
    assert entries({"resourceType": "Patient", "active": True}, "active") == [
        TokenEntry("active", None, "true")
    ]
    assert entries({"resourceType": "Patient", "active": False}, "active") == [
        TokenEntry("active", None, "false")
    ]
    assert entries({"resourceType": "Patient"}, "active") == []


def test_deceased_is_a_boolean_expression() -> None:
    # Patient.deceased.exists() and Patient.deceased != false
    assert entries({"resourceType": "Patient"}, "deceased") == [TokenEntry("deceased", None, "false")]
    alive = {"resourceType": "Patient", "deceasedBoolean": False}
    assert entries(alive, "deceased") == [TokenEntry("deceased", None, "false")]
    dead = {"resourceType": "Patient", "deceasedBoolean": True}
    assert entries(dead, "deceased") == [TokenEntry("deceased", None, "true")]
    dated = {"resourceType": "Patient", "deceasedDateTime": "2019-05-01"}
    assert entries(dated, "deceased") == [TokenEntry("deceased", None, "true")]


def test_string_values_are_codes_without_system() -> None:
    definition = {
        "resourceType": "StructureDefinition",
        "snapshot": {"element": [{"path": "Patient"}, {"path": "Patient.name"}]},
        "differential": {"element": [{"path": "Patient.name"}]},
    }
    assert entries(definition, "path") == [
        TokenEntry("path", None, "Patient"),
        TokenEntry("path", None, "Patient.name"),
    ]


def test_meta_tag_and_security_apply_to_every_type() -> None:
    tag = {"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}
    security = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R",
                "display": "Restricted"}  # fmt: skip
    for resource_type in ("Patient", "Bundle", "Binary"):
        resource = {"resourceType": resource_type, "meta": {"tag": [tag], "security": [security]}}
        assert entries(resource, "_tag") == [TokenEntry("_tag", tag["system"], tag["code"])]
        assert entries(resource, "_security") == [
            TokenEntry("_security", security["system"], "R", "restricted")
        ]

"""The R4 structural validator: every rule, with the issue code and the exact expression it reports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.definitions import load_definitions
from fhir_server.jsonio import loads
from fhir_server.services.validate import Validator
from tests.factories import make_observation, make_patient

VALIDATOR = Validator(load_definitions())
ORG = {"resourceType": "Organization", "id": "org1", "name": "Ward 3"}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
XHTML = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Alice</p></div>'


def problems(resource: Any) -> list[tuple[str, str]]:
    """(code, expression) of every issue, in the order reported."""
    issues = VALIDATOR.validate(resource)
    assert all(issue.severity == "error" and len(issue.expression) == 1 for issue in issues)
    return [(issue.code, issue.expression[0]) for issue in issues]


def ext(url: str = "http://example.org/ext", **value: Any) -> dict[str, Any]:
    return {"url": url, **(value or {"valueString": "x"})}


def without(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key not in keys}


def condition(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": {"text": "Asthma"},
    }
    resource.update(overrides)
    return resource


# --------------------------------------------------------------------------------------------- valid input
VALID: dict[str, Any] = {
    "patient": make_patient(),
    "observation": make_observation(),
    "exact decimals": loads(
        '{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":72.50}}'
    ),
    "choice with its _ companion": without(
        make_observation(valueString="high", _valueString={"extension": [ext()]}), "valueQuantity"
    ),
    "primitive with extension only": make_patient(_birthDate={"extension": [ext()]}),
    "required primitive present only by extension": without(
        make_observation(
            _status={
                "extension": [
                    ext("http://hl7.org/fhir/StructureDefinition/data-absent-reason", valueCode="unknown")
                ]
            }
        ),
        "status",
    ),
    "aligned _given with nulls": make_patient(
        name=[{"given": ["Alice", None, "Beth"], "_given": [None, {"extension": [ext()]}, {"id": "g3"}]}]
    ),
    "_given without given": make_patient(name=[{"family": "Ng", "_given": [{"extension": [ext()]}]}]),
    "nested extensions": make_patient(extension=[{"url": "http://example.org/a", "extension": [ext("b")]}]),
    "modifier extension": make_patient(modifierExtension=[ext(valueBoolean=True)]),
    "narrative": make_patient(text={"status": "generated", "div": XHTML}),
    "leap day": make_patient(birthDate="2000-02-29"),
    "partial dates": make_patient(birthDate="1984-03", deceasedDateTime="2020"),
    "dateTime with zone": make_patient(deceasedDateTime="2020-02-29T23:59:60.123+14:00"),
    "references": make_patient(
        managingOrganization={"reference": "Organization/o-1/_history/2"},
        generalPractitioner=[
            {"reference": "http://example.org/fhir/Practitioner/1"},
            {"reference": "urn:uuid:2a1c8d3e-6f4b-4b8e-9a6a-1d2c3b4a5e6f"},
            {"reference": "PractitionerRole?identifier=http://example.org|42"},
            {"display": "Dr Who"},
            {"identifier": {"value": "12"}},
        ],
    ),
    "reference to any resource": make_observation(focus=[{"reference": "Encounter/e1"}]),
    "contained resource referenced": make_patient(
        contained=[ORG], managingOrganization={"reference": "#org1"}
    ),
    "contained resource referring to its container": make_patient(
        contained=[
            {
                "resourceType": "Provenance",
                "id": "prov",
                "target": [{"reference": "#"}],
                "recorded": "2020-01-01T00:00:00Z",
                "agent": [{"who": {"display": "x"}}],
            }
        ]
    ),
    "contained resource referenced by a canonical": {
        "resourceType": "Questionnaire",
        "status": "active",
        "contained": [{"resourceType": "ValueSet", "id": "vs1", "status": "active"}],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#vs1"}],
    },
    "coding in a required CodeableConcept among others": condition(
        clinicalStatus={
            "coding": [
                {"system": "http://snomed.info/sct", "code": "55561003"},
                {"system": CLINICAL, "code": "active"},
            ]
        }
    ),
    "uncheckable value set": make_patient(photo=[{"contentType": "image/x-anything", "data": "aGVsbG8="}]),
    "units of time": {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    },
    "bundle with resources": {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:2a1c8d3e-6f4b-4b8e-9a6a-1d2c3b4a5e6f",
                "resource": make_patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "DELETE", "url": "Patient/p9"}},
        ],
    },
    "parameters with parts and a resource": {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "a", "part": [{"name": "b", "valueInteger": -3}]},
            {"name": "r", "resource": make_patient()},
        ],
    },
    "questionnaire with nested items": {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}],
    },
    "integers at their limits": make_patient(multipleBirthInteger=2147483647),
    "negative zero integer": loads('{"resourceType":"Patient","multipleBirthInteger":-0}'),
    "unsignedInt zero": make_patient(photo=[{"size": 0}]),
}


@pytest.mark.parametrize("resource", VALID.values(), ids=VALID.keys())
def test_valid_resources_pass(resource: dict[str, Any]) -> None:
    before = copy.deepcopy(resource)
    assert problems(resource) == []
    assert resource == before  # the validator does not touch its input


# ------------------------------------------------------------------------------------------- invalid input
INVALID: dict[str, tuple[Any, list[tuple[str, str]]]] = {
    # the body and its resourceType
    "not an object": ([make_patient()], [("structure", "Resource")]),
    "no resourceType": ({"id": "x"}, [("structure", "Resource")]),
    "unknown resourceType": ({"resourceType": "Patientt"}, [("structure", "Resource")]),
    "abstract resourceType": ({"resourceType": "DomainResource"}, [("structure", "Resource")]),
    "resourceType not a string": ({"resourceType": ["Patient"]}, [("structure", "Resource")]),
    "resourceType below the root": (
        make_patient(name=[{"family": "Ng", "resourceType": "HumanName"}]),
        [("structure", "Patient.name[0].resourceType")],
    ),
    # unknown elements
    "unknown element": (make_patient(foo=1), [("structure", "Patient.foo")]),
    "unknown nested element": (
        make_patient(name=[{"family": "Ng", "nickname": "Al"}]),
        [("structure", "Patient.name[0].nickname")],
    ),
    "unknown backbone element": (
        make_patient(contact=[{"gender": "male", "rank": 1}]),
        [("structure", "Patient.contact[0].rank")],
    ),
    "fhir_comments": (make_patient(fhir_comments=["note"]), [("structure", "Patient.fhir_comments")]),
    "_ of a complex element": (make_patient(_name=[{"id": "n"}]), [("structure", "Patient._name")]),
    "_ of an unknown element": (make_patient(_nickname={"id": "n"}), [("structure", "Patient._nickname")]),
    "_ of an element id": (make_patient(_id={"extension": [ext()]}), [("structure", "Patient._id")]),
    "_ of Extension.url": (
        make_patient(extension=[{"url": "http://a", "_url": {"id": "u"}, "valueString": "x"}]),
        [("structure", "Patient.extension[0]._url")],
    ),
    # resource id
    "id with a space": (make_patient(id="a b"), [("structure", "Patient.id")]),
    "id too long": (make_patient(id="x" * 65), [("structure", "Patient.id")]),
    # cardinality and JSON shape
    "array as an object": (make_patient(name={"family": "Ng"}), [("structure", "Patient.name")]),
    "single value as an array": (make_patient(gender=["female"]), [("structure", "Patient.gender")]),
    "single object as an array": (
        make_patient(maritalStatus=[{"text": "married"}]),
        [("structure", "Patient.maritalStatus")],
    ),
    "empty array": (make_patient(identifier=[]), [("structure", "Patient.identifier")]),
    "empty object": (make_patient(telecom=[{}]), [("structure", "Patient.telecom[0]")]),
    "null value": ({"resourceType": "Patient", "active": None}, [("structure", "Patient.active")]),
    "null object": (
        {"resourceType": "Patient", "maritalStatus": None},
        [("structure", "Patient.maritalStatus")],
    ),
    "null in an array": (
        make_patient(name=[{"given": ["Alice", None]}]),
        [("structure", "Patient.name[0].given[1]")],
    ),
    "null object in an array": (make_patient(address=[None]), [("structure", "Patient.address[0]")]),
    "object where a primitive belongs": (
        make_patient(gender={"value": "female"}),
        [("structure", "Patient.gender")],
    ),
    "primitive where an object belongs": (
        make_patient(maritalStatus="married"),
        [("structure", "Patient.maritalStatus")],
    ),
    "missing required elements": (
        {"resourceType": "Observation"},
        [("required", "Observation.status"), ("required", "Observation.code")],
    ),
    "missing required choice": (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
        },
        [("required", "MedicationRequest.medication[x]")],
    ),
    "missing required backbone element": (
        make_patient(communication=[{"preferred": True}]),
        [("required", "Patient.communication[0].language")],
    ),
    "element with only an id": (
        make_patient(maritalStatus={"id": "m"}),
        [("invariant", "Patient.maritalStatus")],
    ),
    # choice types
    "two deceased[x]": (
        make_patient(deceasedBoolean=True, deceasedDateTime="2020-01-01"),
        [("structure", "Patient.deceasedDateTime")],
    ),
    "choice and another variant's companion": (
        make_patient(deceasedBoolean=True, _deceasedDateTime={"extension": [ext()]}),
        [("structure", "Patient.deceasedDateTime")],
    ),
    "choice type not allowed": (
        make_patient(deceasedString="yes"),
        [("structure", "Patient.deceasedString")],
    ),
    "bare choice name": (make_patient(deceased=True), [("structure", "Patient.deceased")]),
    # primitive JSON types and formats
    "boolean as a string": (make_patient(active="true"), [("structure", "Patient.active")]),
    "boolean as a number": (make_patient(active=1), [("structure", "Patient.active")]),
    "integer as a decimal": (
        loads('{"resourceType":"Patient","multipleBirthInteger":2.0}'),
        [("structure", "Patient.multipleBirthInteger")],
    ),
    "integer as a boolean": (
        make_patient(multipleBirthInteger=True),
        [("structure", "Patient.multipleBirthInteger")],
    ),
    "integer as a string": (
        make_patient(multipleBirthInteger="2"),
        [("structure", "Patient.multipleBirthInteger")],
    ),
    "integer over 32 bits": (
        make_patient(multipleBirthInteger=2147483648),
        [("value", "Patient.multipleBirthInteger")],
    ),
    "integer over 64 bits": (
        loads('{"resourceType":"Patient","multipleBirthInteger":99999999999999999999}'),
        [("value", "Patient.multipleBirthInteger")],
    ),
    "negative unsignedInt": (make_patient(photo=[{"size": -1}]), [("value", "Patient.photo[0].size")]),
    "zero positiveInt": (
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "participant": [{"status": "accepted", "actor": {"display": "x"}}],
            "minutesDuration": 0,
        },
        [("value", "Appointment.minutesDuration")],
    ),
    "decimal as a string": (
        loads(
            '{"resourceType":"Observation","status":"final","code":{"text":"w"},'
            '"valueQuantity":{"value":"72.5"}}'
        ),
        [("structure", "Observation.valueQuantity.value")],
    ),
    "decimal as a boolean": (
        make_observation(valueQuantity={"value": False}),
        [("structure", "Observation.valueQuantity.value")],
    ),
    "empty string": (make_patient(name=[{"family": ""}]), [("structure", "Patient.name[0].family")]),
    "string as a number": (make_patient(name=[{"family": 7}]), [("structure", "Patient.name[0].family")]),
    "string with a vertical tab": (
        make_patient(name=[{"family": "N\x0bg"}]),
        [("structure", "Patient.name[0].family")],
    ),
    "impossible date": (make_patient(birthDate="2020-02-30"), [("value", "Patient.birthDate")]),
    "29 February of a common year": (make_patient(birthDate="1900-02-29"), [("value", "Patient.birthDate")]),
    "31 April in a dateTime": (
        make_patient(deceasedDateTime="2020-04-31T10:00:00Z"),
        [("value", "Patient.deceasedDateTime")],
    ),
    "month 13": (make_patient(birthDate="2020-13-01"), [("structure", "Patient.birthDate")]),
    "date with a time": (
        make_patient(birthDate="2020-01-01T00:00:00Z"),
        [("structure", "Patient.birthDate")],
    ),
    "dateTime without a zone": (
        make_patient(deceasedDateTime="2020-01-01T10:00:00"),
        [("structure", "Patient.deceasedDateTime")],
    ),
    "instant without a time": (make_observation(issued="2020-01-01"), [("structure", "Observation.issued")]),
    "time out of range": (
        without(make_observation(valueTime="25:00:00"), "valueQuantity"),
        [("structure", "Observation.valueTime")],
    ),
    "code with a trailing space": (make_patient(gender="female "), [("structure", "Patient.gender")]),
    "uri with a space": (make_patient(implicitRules="http://a b"), [("structure", "Patient.implicitRules")]),
    "bad oid": (
        make_patient(extension=[ext(valueOid="1.2.3")]),
        [("structure", "Patient.extension[0].valueOid")],
    ),
    "bad uuid": (
        make_patient(extension=[ext(valueUuid="urn:uuid:XYZ")]),
        [("structure", "Patient.extension[0].valueUuid")],
    ),
    "bad id": (make_patient(meta={"versionId": "1 2"}), [("structure", "Patient.meta.versionId")]),
    "bad base64Binary": (make_patient(photo=[{"data": "abc"}]), [("structure", "Patient.photo[0].data")]),
    # primitive "_name" companions
    "_given misaligned": (
        make_patient(name=[{"given": ["Alice", "Beth"], "_given": [{"extension": [ext()]}]}]),
        [("structure", "Patient.name[0].given")],
    ),
    "_given and given both null": (
        make_patient(name=[{"given": ["Alice", None], "_given": [{"id": "a"}, None]}]),
        [("structure", "Patient.name[0].given[1]"), ("structure", "Patient.name[0].given[1]")],
    ),
    "_given not an array": (
        make_patient(name=[{"given": ["Alice"], "_given": {"id": "a"}}]),
        [("structure", "Patient.name[0].given")],
    ),
    "_birthDate as an array": (make_patient(_birthDate=[{"id": "b"}]), [("structure", "Patient.birthDate")]),
    "_birthDate not an object": (make_patient(_birthDate="x"), [("structure", "Patient.birthDate")]),
    "_birthDate with an unknown element": (
        make_patient(_birthDate={"id": "b", "value": "1984"}),
        [("structure", "Patient.birthDate.value")],
    ),
    "_birthDate extension invalid": (
        make_patient(_birthDate={"extension": [{"valueString": "x"}]}),
        [("required", "Patient.birthDate.extension[0].url")],
    ),
    "_birthDate with only an id and no value": (
        make_patient(birthDate=None, _birthDate={"id": "b"}),
        [("invariant", "Patient.birthDate")],
    ),
    # extensions
    "extension without url": (
        make_patient(extension=[{"valueString": "x"}]),
        [("required", "Patient.extension[0].url")],
    ),
    "extension with value and extensions": (
        make_patient(extension=[{"url": "http://a", "valueString": "x", "extension": [ext()]}]),
        [("invariant", "Patient.extension[0]")],
    ),
    "extension with neither value nor extensions": (
        make_patient(extension=[{"url": "http://a"}]),
        [("invariant", "Patient.extension[0]")],
    ),
    "extension with two values": (
        make_patient(extension=[ext(valueString="x", valueBoolean=True)]),
        [("structure", "Patient.extension[0].valueBoolean")],
    ),
    "nested extension invalid": (
        make_patient(extension=[{"url": "http://a", "extension": [{"url": "b", "valueFoo": 1}]}]),
        [("structure", "Patient.extension[0].extension[0].valueFoo")],
    ),
    "modifier extension without url": (
        make_patient(modifierExtension=[{"valueBoolean": True}]),
        [("required", "Patient.modifierExtension[0].url")],
    ),
    "extension on a data type": (
        make_patient(name=[{"family": "Ng", "extension": [{"url": "http://a"}]}]),
        [("invariant", "Patient.name[0].extension[0]")],
    ),
    # narrative
    "narrative not a div": (
        make_patient(text={"status": "generated", "div": "<p>Alice</p>"}),
        [("structure", "Patient.text.div")],
    ),
    "narrative without the XHTML namespace": (
        make_patient(text={"status": "generated", "div": "<div>Alice</div>"}),
        [("structure", "Patient.text.div")],
    ),
    "narrative div not closed": (
        make_patient(text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x'}),
        [("structure", "Patient.text.div")],
    ),
    "narrative without div": (make_patient(text={"status": "generated"}), [("required", "Patient.text.div")]),
    "narrative status": (
        make_patient(text={"status": "made-up", "div": XHTML}),
        [("code-invalid", "Patient.text.status")],
    ),
    # references
    "reference to an unknown type": (
        make_patient(managingOrganization={"reference": "Organisation/1"}),
        [("value", "Patient.managingOrganization.reference")],
    ),
    "reference to a type not allowed": (
        make_patient(managingOrganization={"reference": "Patient/1"}),
        [("value", "Patient.managingOrganization.reference")],
    ),
    "reference in an array to a type not allowed": (
        make_patient(generalPractitioner=[{"reference": "Practitioner/1"}, {"reference": "Device/2"}]),
        [("value", "Patient.generalPractitioner[1].reference")],
    ),
    "not a literal reference": (
        make_patient(managingOrganization={"reference": "just some text"}),
        [("value", "Patient.managingOrganization.reference")],
    ),
    "reference with an invalid id": (
        make_patient(managingOrganization={"reference": "Organization/a_b"}),
        [("value", "Patient.managingOrganization.reference")],
    ),
    "conditional reference to an unknown type": (
        make_patient(managingOrganization={"reference": "Org?name=x"}),
        [("value", "Patient.managingOrganization.reference")],
    ),
    "reference in a data type": (
        make_patient(identifier=[{"value": "1", "assigner": {"reference": "Patient/2"}}]),
        [("value", "Patient.identifier[0].assigner.reference")],
    ),
    "local reference to nothing": (
        make_patient(managingOrganization={"reference": "#org9"}),
        [("invariant", "Patient.managingOrganization.reference")],
    ),
    # required bindings
    "code outside its value set": (make_patient(gender="mail"), [("code-invalid", "Patient.gender")]),
    "code with the wrong case": (make_patient(gender="Female"), [("code-invalid", "Patient.gender")]),
    "code in a backbone element": (
        make_patient(contact=[{"gender": "f"}]),
        [("code-invalid", "Patient.contact[0].gender")],
    ),
    "code in an array": (
        {"resourceType": "Questionnaire", "status": "draft", "subjectType": ["Patient", "Patients"]},
        [("code-invalid", "Questionnaire.subjectType[1]")],
    ),
    "code in a data type": (
        make_observation(valueQuantity={"value": 1, "comparator": "~"}),
        [("code-invalid", "Observation.valueQuantity.comparator")],
    ),
    "code in a nested item (contentReference)": (
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "2", "type": "bogus"}]}],
        },
        [("code-invalid", "Questionnaire.item[0].item[0].type")],
    ),
    "required element in a nested item": (
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"type": "display"}]}],
        },
        [("required", "Questionnaire.item[0].item[0].linkId")],
    ),
    "code in an inline Element": (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "aspirin"},
            "subject": {"reference": "Patient/p1"},
            "dosageInstruction": [{"timing": {"repeat": {"period": 1, "periodUnit": "days"}}}],
        },
        [("code-invalid", "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit")],
    ),
    "CodeableConcept with a wrong system": (
        condition(clinicalStatus={"coding": [{"system": "http://snomed.info/sct", "code": "active"}]}),
        [("code-invalid", "Condition.clinicalStatus")],
    ),
    "CodeableConcept with a wrong code": (
        condition(clinicalStatus={"coding": [{"system": CLINICAL, "code": "ongoing"}]}),
        [("code-invalid", "Condition.clinicalStatus")],
    ),
    "CodeableConcept without a system": (
        condition(clinicalStatus={"coding": [{"code": "active"}]}),
        [("code-invalid", "Condition.clinicalStatus")],
    ),
    "CodeableConcept with text only": (
        condition(clinicalStatus={"text": "active"}),
        [("code-invalid", "Condition.clinicalStatus")],
    ),
    # contained resources (dom-2 .. dom-5)
    "contained without id": (
        make_patient(contained=[{"resourceType": "Organization", "name": "x"}]),
        [("required", "Patient.contained[0].ofType(Organization).id")],
    ),
    "contained not referenced": (make_patient(contained=[ORG]), [("invariant", "Patient.contained[0]")]),
    "contained with contained": (
        make_patient(
            contained=[{**ORG, "contained": [{"resourceType": "Organization", "id": "o2", "name": "y"}]}],
            managingOrganization={"reference": "#org1"},
        ),
        [("invariant", "Patient.contained[0].ofType(Organization).contained")],
    ),
    "contained with versionId": (
        make_patient(
            contained=[{**ORG, "meta": {"versionId": "1"}}], managingOrganization={"reference": "#org1"}
        ),
        [("invariant", "Patient.contained[0].ofType(Organization).meta")],
    ),
    "contained with security labels": (
        make_patient(
            contained=[{**ORG, "meta": {"security": [{"code": "R"}]}}],
            managingOrganization={"reference": "#org1"},
        ),
        [("invariant", "Patient.contained[0].ofType(Organization).meta.security")],
    ),
    "contained invalid": (
        make_patient(contained=[{**ORG, "active": "yes"}], managingOrganization={"reference": "#org1"}),
        [("structure", "Patient.contained[0].ofType(Organization).active")],
    ),
    "contained without resourceType": (
        make_patient(contained=[{"id": "x"}]),
        [("structure", "Patient.contained[0]")],
    ),
    "contained not an object": (
        make_patient(contained=["Organization/1"]),
        [("structure", "Patient.contained[0]")],
    ),
    # resources inside resources
    "bundle entry": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": make_patient()},
                {"resource": make_patient()},
                {"resource": make_observation()},
                {"resource": make_patient(birthDate="1984-02-30")},
            ],
        },
        [("value", "Bundle.entry[3].resource.ofType(Patient).birthDate")],
    ),
    "bundle entry of unknown type": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patinet"}}],
        },
        [("structure", "Bundle.entry[0].resource")],
    ),
    "bundle entry missing required": (
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"resource": {"resourceType": "Observation"}, "request": {"method": "POST"}}],
        },
        [
            ("required", "Bundle.entry[0].resource.ofType(Observation).status"),
            ("required", "Bundle.entry[0].resource.ofType(Observation).code"),
            ("required", "Bundle.entry[0].request.url"),
        ],
    ),
    "bundle entry contained is scoped to its resource": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": make_patient(contained=[ORG])},
                {"resource": make_patient(managingOrganization={"reference": "#org1"})},
            ],
        },
        [
            ("invariant", "Bundle.entry[0].resource.ofType(Patient).contained[0]"),
            ("invariant", "Bundle.entry[1].resource.ofType(Patient).managingOrganization.reference"),
        ],
    ),
    "parameters resource": (
        {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": make_patient(gender="x")}]},
        [("code-invalid", "Parameters.parameter[0].resource.ofType(Patient).gender")],
    ),
    "parameters part (contentReference)": (
        {"resourceType": "Parameters", "parameter": [{"name": "p", "part": [{"valueString": "x"}]}]},
        [("required", "Parameters.parameter[0].part[0].name")],
    ),
}


@pytest.mark.parametrize(("resource", "expected"), INVALID.values(), ids=INVALID.keys())
def test_invalid_resources_report_code_and_expression(resource: Any, expected: list[tuple[str, str]]) -> None:
    assert problems(resource) == expected


def test_every_problem_is_reported_in_document_order() -> None:
    resource = make_patient(
        active="yes",
        name=[{"family": "", "given": ["A", 1]}],
        gender="mail",
        foo=True,
        birthDate="2021-02-29",
        managingOrganization={"reference": "Patient/x"},
    )
    assert problems(resource) == [
        ("structure", "Patient.active"),
        ("structure", "Patient.name[0].family"),
        ("structure", "Patient.name[0].given[1]"),
        ("code-invalid", "Patient.gender"),
        ("value", "Patient.birthDate"),
        ("structure", "Patient.foo"),
        ("value", "Patient.managingOrganization.reference"),
    ]


def test_issue_diagnostics_are_readable() -> None:
    issues = VALIDATOR.validate(make_patient(gender="mail", foo=1, birthDate="2020-02-30"))
    messages = {issue.expression[0]: issue.diagnostics for issue in issues}
    assert "administrative-gender" in messages["Patient.gender"]
    assert "foo" in messages["Patient.foo"]
    assert "2020-02-30" in messages["Patient.birthDate"]


def test_coding_with_required_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """No base R4 Coding element has a required binding; profiles add them, so the rule is tested on Meta.tag."""
    defs = load_definitions()
    tag = defs.type("Meta").node.elements["tag"]
    monkeypatch.setattr(tag, "valueset", defs.valueset("http://hl7.org/fhir/ValueSet/administrative-gender"))
    validator = Validator(defs)
    good = {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}
    bad = {"system": "http://hl7.org/fhir/administrative-gender", "code": "M"}
    assert validator.validate(make_patient(meta={"tag": [good]})) == []
    issues = validator.validate(make_patient(meta={"tag": [good, bad, {"code": "male"}]}))
    assert [(i.code, i.expression) for i in issues] == [
        ("code-invalid", ("Patient.meta.tag[1]",)),
        ("code-invalid", ("Patient.meta.tag[2]",)),
    ]


def test_deep_nesting_is_an_issue_not_a_crash() -> None:
    item: dict[str, Any] = {"linkId": "leaf", "type": "display"}
    for level in range(3000):
        item = {"linkId": str(level), "type": "group", "item": [item]}
    issues = VALIDATOR.validate({"resourceType": "Questionnaire", "status": "draft", "item": [item]})
    assert [(i.code, i.expression) for i in issues] == [("structure", ("Resource",))]

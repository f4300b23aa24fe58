"""The two patch formats as pure functions: JSON Patch (RFC 6902) and FHIRPath Patch (FHIR R4 fhirpatch.html)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.errors import FhirError, InvalidRequest, ValidationFailed
from fhir_server.jsonio import FhirDecimal
from fhir_server.services.patch import apply_fhirpath_patch, apply_json_patch, r4_is_repeating

EXAMPLE_ORG = "http://example.org"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"


def patient(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": EXAMPLE_ORG, "value": f"value {n}"} for n in (1, 2, 3, 4)],
        "active": True,
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": BIRTH_TIME, "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    }
    resource.update(overrides)
    return resource


def observation(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "Body weight"},
        "valueQuantity": {"value": FhirDecimal("72.5"), "unit": "kg"},
    }
    resource.update(overrides)
    return resource


def raises(kind: type[FhirError], expression: str, call: Any, *args: Any, **kwargs: Any) -> FhirError:
    """Assert ``call`` raises exactly ``kind`` whose OperationOutcome names ``expression``."""
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    error = info.value
    assert type(error) is kind
    assert error.issues[0].expression == (expression,), error.issues
    return error


# ============================================================================================ JSON Patch


class TestJsonPatchOperations:
    def test_add_object_member_array_index_and_append(self) -> None:
        result = apply_json_patch(
            patient(),
            [
                {"op": "add", "path": "/gender", "value": "male"},
                {"op": "add", "path": "/name/0/given/1", "value": "Middle"},
                {"op": "add", "path": "/name/0/given/-", "value": "Last"},
                {"op": "add", "path": "/name/0/given/4", "value": "AtLength"},
            ],
        )
        assert result["gender"] == "male"
        assert result["name"][0]["given"] == ["Peter", "Middle", "James", "Last", "AtLength"]

    def test_add_replaces_an_existing_member(self) -> None:
        assert (
            apply_json_patch(patient(), [{"op": "add", "path": "/active", "value": False}])["active"] is False
        )

    def test_add_index_beyond_length_fails(self) -> None:
        error = raises(
            ValidationFailed,
            "/0/path",
            apply_json_patch,
            patient(),
            [{"op": "add", "path": "/name/0/given/3", "value": "x"}],
        )
        assert "out of range" in error.diagnostics

    def test_add_under_missing_parent_fails(self) -> None:
        raises(
            ValidationFailed,
            "/0/path",
            apply_json_patch,
            patient(),
            [{"op": "add", "path": "/x/y", "value": 1}],
        )

    def test_remove_member_and_array_item(self) -> None:
        result = apply_json_patch(
            patient(), [{"op": "remove", "path": "/active"}, {"op": "remove", "path": "/identifier/0"}]
        )
        assert "active" not in result
        assert [i["value"] for i in result["identifier"]] == ["value 2", "value 3", "value 4"]

    def test_remove_missing_member_or_index_fails(self) -> None:
        raises(
            ValidationFailed, "/0/path", apply_json_patch, patient(), [{"op": "remove", "path": "/gender"}]
        )
        raises(
            ValidationFailed,
            "/1/path",
            apply_json_patch,
            patient(),
            [
                {"op": "test", "path": "/active", "value": True},
                {"op": "remove", "path": "/identifier/4"},
            ],
        )

    def test_replace(self) -> None:
        result = apply_json_patch(
            patient(), [{"op": "replace", "path": "/name/0/family", "value": "Chalmers1"}]
        )
        assert result["name"][0]["family"] == "Chalmers1"

    def test_replace_missing_member_fails(self) -> None:
        raises(
            ValidationFailed,
            "/0/path",
            apply_json_patch,
            patient(),
            [{"op": "replace", "path": "/gender", "value": "x"}],
        )

    def test_move_member_and_array_item(self) -> None:
        result = apply_json_patch(
            patient(),
            [
                {"op": "move", "from": "/identifier/3", "path": "/identifier/1"},
                {"op": "move", "from": "/birthDate", "path": "/name/0/text"},
            ],
        )
        assert [i["value"] for i in result["identifier"]] == ["value 1", "value 4", "value 2", "value 3"]
        assert "birthDate" not in result and result["name"][0]["text"] == "1974-12-25"

    def test_move_into_own_child_is_malformed(self) -> None:
        raises(
            InvalidRequest,
            "/0/from",
            apply_json_patch,
            patient(),
            [
                {"op": "move", "from": "/name/0", "path": "/name/0/given"},
            ],
        )

    def test_move_from_missing_location_fails(self) -> None:
        raises(
            ValidationFailed,
            "/0/from",
            apply_json_patch,
            patient(),
            [
                {"op": "move", "from": "/gender", "path": "/x"},
            ],
        )

    def test_copy_makes_an_independent_value(self) -> None:
        result = apply_json_patch(
            patient(),
            [
                {"op": "copy", "from": "/name/0", "path": "/name/-"},
                {"op": "replace", "path": "/name/1/family", "value": "Copy"},
            ],
        )
        assert [n["family"] for n in result["name"]] == ["Chalmers", "Copy"]
        assert result["name"][0]["given"] is not result["name"][1]["given"]

    def test_test_passes_and_fails(self) -> None:
        ok = [
            {
                "op": "test",
                "path": "/name/0",
                "value": {"given": ["Peter", "James"], "family": "Chalmers", "use": "official"},
            }
        ]
        assert apply_json_patch(patient(), ok) == patient()
        error = raises(
            ValidationFailed,
            "/1/value",
            apply_json_patch,
            patient(),
            [
                {"op": "replace", "path": "/active", "value": False},
                {"op": "test", "path": "/active", "value": True},
            ],
        )
        assert "test failed" in error.diagnostics

    def test_test_compares_numbers_numerically_but_not_booleans(self) -> None:
        resource = observation(valueQuantity={"value": FhirDecimal("1.0")}, valueInteger=1)
        apply_json_patch(resource, [{"op": "test", "path": "/valueQuantity/value", "value": 1}])
        apply_json_patch(
            resource, [{"op": "test", "path": "/valueQuantity/value", "value": FhirDecimal("1.00")}]
        )
        apply_json_patch(resource, [{"op": "test", "path": "/valueQuantity/value", "value": 1.0}])
        raises(
            ValidationFailed,
            "/0/value",
            apply_json_patch,
            resource,
            [
                {"op": "test", "path": "/valueInteger", "value": True},
            ],
        )
        raises(
            ValidationFailed,
            "/0/value",
            apply_json_patch,
            resource,
            [
                {"op": "test", "path": "/valueInteger", "value": "1"},
            ],
        )

    def test_test_of_missing_location_fails_on_path(self) -> None:
        raises(
            ValidationFailed,
            "/0/path",
            apply_json_patch,
            patient(),
            [{"op": "test", "path": "/nope", "value": 1}],
        )


class TestJsonPointer:
    def test_escapes(self) -> None:
        resource = patient(contained=[{"resourceType": "Basic", "id": "b", "a/b": 1, "m~n": 2, "~1": 3}])
        result = apply_json_patch(
            resource,
            [
                {"op": "replace", "path": "/contained/0/a~1b", "value": 10},
                {"op": "replace", "path": "/contained/0/m~0n", "value": 20},
                {"op": "remove", "path": "/contained/0/~01"},
            ],
        )
        assert result["contained"][0] == {"resourceType": "Basic", "id": "b", "a/b": 10, "m~n": 20}

    @pytest.mark.parametrize("pointer", ["name/0", "/name/0~2", "/name~"])
    def test_malformed_pointer(self, pointer: str) -> None:
        raises(InvalidRequest, "/0/path", apply_json_patch, patient(), [{"op": "remove", "path": pointer}])

    @pytest.mark.parametrize(
        "pointer", ["/identifier/01", "/identifier/-", "/identifier/x", "/identifier/-1"]
    )
    def test_bad_array_index(self, pointer: str) -> None:
        raises(ValidationFailed, "/0/path", apply_json_patch, patient(), [{"op": "remove", "path": pointer}])

    def test_pointer_through_a_scalar_fails(self) -> None:
        raises(
            ValidationFailed, "/0/path", apply_json_patch, patient(), [{"op": "remove", "path": "/active/x"}]
        )


class TestJsonPatchDocument:
    @pytest.mark.parametrize(
        ("document", "expression"),
        [
            ({"op": "add"}, "/"),
            (["add"], "/0"),
            ([{"op": "frobnicate", "path": "/a"}], "/0/op"),
            ([{"path": "/a", "value": 1}], "/0/op"),
            ([{"op": "add", "value": 1}], "/0/path"),
            ([{"op": "add", "path": 3, "value": 1}], "/0/path"),
            ([{"op": "add", "path": "/a"}], "/0"),
            ([{"op": "test", "path": "/a"}], "/0"),
            ([{"op": "copy", "path": "/a"}], "/0/from"),
        ],
    )
    def test_malformed_document(self, document: Any, expression: str) -> None:
        raises(InvalidRequest, expression, apply_json_patch, patient(), document)

    def test_malformed_operation_is_rejected_before_anything_applies(self) -> None:
        document = [{"op": "remove", "path": "/nope"}, {"op": "bogus", "path": "/a"}]
        raises(InvalidRequest, "/1/op", apply_json_patch, patient(), document)

    def test_unknown_members_are_ignored_and_null_is_a_value(self) -> None:
        result = apply_json_patch(patient(), [{"op": "add", "path": "/x", "value": None, "comment": "hi"}])
        assert result["x"] is None

    def test_empty_patch_returns_an_equal_copy(self) -> None:
        resource = patient()
        result = apply_json_patch(resource, [])
        assert result == resource and result is not resource and result["name"] is not resource["name"]

    def test_resource_type_and_id_cannot_change(self) -> None:
        raises(
            InvalidRequest,
            "/0",
            apply_json_patch,
            patient(),
            [{"op": "replace", "path": "/id", "value": "x"}],
        )
        raises(InvalidRequest, "/0", apply_json_patch, patient(), [{"op": "remove", "path": "/resourceType"}])
        raises(
            InvalidRequest, "/0", apply_json_patch, patient(), [{"op": "replace", "path": "", "value": []}]
        )

    def test_whole_document_replace_keeping_identity_is_allowed(self) -> None:
        replacement = {"resourceType": "Patient", "id": "p1", "active": False}
        assert (
            apply_json_patch(patient(), [{"op": "replace", "path": "", "value": replacement}]) == replacement
        )

    def test_removing_the_document_fails(self) -> None:
        raises(ValidationFailed, "/0/path", apply_json_patch, patient(), [{"op": "remove", "path": ""}])

    def test_inputs_are_not_mutated_and_values_are_not_shared(self) -> None:
        resource, value = patient(), {"system": "s", "value": "v"}
        document = [
            {"op": "add", "path": "/identifier/-", "value": value},
            {"op": "remove", "path": "/name/0/given/0"},
            {"op": "move", "from": "/identifier/0", "path": "/identifier/2"},
        ]
        before_resource, before_document = copy.deepcopy(resource), copy.deepcopy(document)
        result = apply_json_patch(resource, document)
        assert resource == before_resource and document == before_document
        result["identifier"][-1]["value"] = "changed"
        assert value == {"system": "s", "value": "v"}

    def test_decimal_fidelity(self) -> None:
        document = jsonio.loads(b'[{"op": "replace", "path": "/valueQuantity/value", "value": 72.50}]')
        result = apply_json_patch(observation(), document)
        assert b'"value":72.50' in jsonio.dumps(result)


# ======================================================================================== FHIRPath Patch


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One ``operation`` parameter; ``value`` is given as the part's content (``{"valueString": ...}``)."""
    built: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, content in parts.items():
        if name == "name":
            built.append({"name": "name", "valueString": content})
        elif name == "value":
            built.append({"name": "value", **content})
        else:
            built.append({"name": name, "valueInteger": content})
    return {"name": "operation", "part": built}


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def fhirpath(resource: dict[str, Any], *operations: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, parameters(*operations), **kwargs)


class TestFhirPathReplace:
    def test_spec_example_replace_identifier_value_selected_by_where(self) -> None:
        resource = patient(
            identifier=[{"system": "http://other", "value": "a"}, {"system": EXAMPLE_ORG, "value": "b"}]
        )
        result = fhirpath(
            resource,
            operation(
                "replace",
                f"Patient.identifier.where(system='{EXAMPLE_ORG}').value",
                value={"valueString": "c"},
            ),
        )
        assert result["identifier"] == [
            {"system": "http://other", "value": "a"},
            {"system": EXAMPLE_ORG, "value": "c"},
        ]

    def test_replace_complex_replaces_the_whole_value(self) -> None:
        resource = patient(maritalStatus={"id": "1", "text": "married"})
        value = {"valueCodeableConcept": {"id": "2", "text": "not married"}}
        result = fhirpath(resource, operation("replace", "Patient.maritalStatus", value=value))
        assert result["maritalStatus"] == {"id": "2", "text": "not married"}

    def test_replace_nested_primitive_with_indexer_first_and_last(self) -> None:
        resource = patient(name=[{"family": "A"}, {"family": "B"}, {"family": "C"}])
        result = fhirpath(
            resource,
            operation("replace", "Patient.name[1].family", value={"valueString": "b"}),
            operation("replace", "Patient.name.first().family", value={"valueString": "a"}),
            operation("replace", "Patient.name.last().family", value={"valueString": "c"}),
        )
        assert [n["family"] for n in result["name"]] == ["a", "b", "c"]

    def test_replace_primitive_drops_its_extensions_unless_given(self) -> None:
        result = fhirpath(
            patient(), operation("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})
        )
        assert result["birthDate"] == "1930-01-01" and "_birthDate" not in result
        extension = {"extension": [{"url": BIRTH_TIME, "valueDateTime": "1930-01-01T01:00:00Z"}]}
        value = {"valueDate": "1930-01-01", "_valueDate": extension}
        result = fhirpath(patient(), operation("replace", "Patient.birthDate", value=value))
        assert result["_birthDate"] == extension

    def test_replace_choice_element_found_by_base_name_may_change_type(self) -> None:
        result = fhirpath(
            observation(), operation("replace", "Observation.value", value={"valueString": "heavy"})
        )
        assert result["valueString"] == "heavy" and "valueQuantity" not in result
        assert list(result) == ["resourceType", "id", "status", "code", "valueString"]

    def test_replace_through_of_type(self) -> None:
        result = fhirpath(
            observation(),
            operation("replace", "Observation.value.ofType(Quantity).unit", value={"valueString": "g"}),
        )
        assert result["valueQuantity"]["unit"] == "g"
        unchanged = fhirpath(observation(), operation("delete", "Observation.value.ofType(string)"))
        assert unchanged == observation()

    def test_replace_item_of_primitive_array_keeps_alignment(self) -> None:
        name = {"given": ["Peter", "James"], "_given": [{"id": "g0"}, None]}
        result = fhirpath(
            patient(name=[name]), operation("replace", "Patient.name.given[0]", value={"valueString": "P"})
        )
        assert result["name"][0] == {"given": ["P", "James"]}

    def test_replace_decimal_keeps_its_digits(self) -> None:
        body = jsonio.loads(
            b'{"resourceType": "Parameters", "parameter": [{"name": "operation", "part": ['
            b'{"name": "type", "valueCode": "replace"},'
            b'{"name": "path", "valueString": "Observation.value.value"},'
            b'{"name": "value", "valueDecimal": 72.50}]}]}'
        )
        result = apply_fhirpath_patch(observation(), body)
        assert isinstance(result["valueQuantity"]["value"], FhirDecimal)
        assert b'"value":72.50' in jsonio.dumps(result)

    def test_replace_of_nothing_or_several_fails_naming_the_operation(self) -> None:
        ok = operation("replace", "Patient.active", value={"valueBoolean": False})
        error = raises(
            ValidationFailed,
            "Parameters.parameter[1]",
            fhirpath,
            patient(),
            ok,
            operation("replace", "Patient.gender", value={"valueCode": "male"}),
        )
        assert "matched nothing" in error.diagnostics
        error = raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("replace", "Patient.identifier.value", value={"valueString": "x"}),
        )
        assert "4 elements" in error.diagnostics

    def test_replace_id_or_the_resource_is_refused(self) -> None:
        raises(
            InvalidRequest,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("replace", "Patient.id", value={"valueId": "other"}),
        )
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("replace", "Patient", value={"valueString": "x"}),
        )

    def test_value_of_the_wrong_type_is_refused(self) -> None:
        raises(
            ValidationFailed,
            "Parameters.parameter[0].part[2]",
            fhirpath,
            patient(),
            operation("replace", "Patient.name[0]", value={"valueString": "Peter"}),
        )
        raises(
            ValidationFailed,
            "Parameters.parameter[0].part[2]",
            fhirpath,
            observation(),
            operation("replace", "Observation.value", value={"valueAddress": {"city": "x"}}),
        )


class TestFhirPathAdd:
    def test_add_primitive_to_the_resource(self) -> None:
        result = fhirpath(patient(), operation("add", "Patient", name="gender", value={"valueCode": "male"}))
        assert result["gender"] == "male"

    def test_add_nested_primitive(self) -> None:
        resource = patient(contact=[{"name": {"text": "a name"}}])
        result = fhirpath(
            resource, operation("add", "Patient.contact[0]", name="gender", value={"valueCode": "male"})
        )
        assert result["contact"] == [{"name": {"text": "a name"}, "gender": "male"}]

    def test_spec_example_add_contact_from_nested_parts(self) -> None:
        value = {"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]}
        result = fhirpath(patient(), operation("add", "Patient", name="contact", value=value))
        assert result["contact"] == [{"name": {"text": "a name"}}]

    def test_nested_parts_repeat_by_definition_or_by_repetition(self) -> None:
        value = {
            "part": [
                {
                    "name": "name",
                    "part": [
                        {"name": "family", "valueString": "du Marché"},
                        {"name": "given", "valueString": "Bénédicte"},
                    ],
                },
                {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
                {"name": "gender", "valueCode": "female"},
            ]
        }
        result = fhirpath(patient(), operation("add", "Patient", name="contact", value=value))
        assert result["contact"] == [
            {
                "name": {"family": "du Marché", "given": ["Bénédicte"]},
                "telecom": [{"system": "phone", "value": "1"}],
                "gender": "female",
            }
        ]
        two = {"part": [{"name": "family", "valueString": "A"}, {"name": "family", "valueString": "B"}]}
        result = fhirpath(patient(), operation("add", "Patient", name="name", value=two), is_repeating=None)
        assert result["name"][-1] == {"family": ["A", "B"]}

    def test_without_cardinality_a_single_part_is_a_single_value(self) -> None:
        value = {"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]}
        result = fhirpath(
            patient(), operation("add", "Patient", name="contact", value=value), is_repeating=None
        )
        assert result["contact"] == {"name": {"text": "a name"}}

    def test_is_repeating_receives_structure_definition_paths(self) -> None:
        asked: list[str] = []

        def is_repeating(path: str) -> bool | None:
            asked.append(path)
            return r4_is_repeating(path)

        value = {"part": [{"name": "name", "part": [{"name": "given", "valueString": "B"}]}]}
        fhirpath(
            patient(), operation("add", "Patient", name="contact", value=value), is_repeating=is_repeating
        )
        assert set(asked) == {"Patient.contact", "Patient.contact.name", "HumanName.given"}

    def test_nested_choice_part_takes_its_json_name_from_the_value(self) -> None:
        value = {
            "part": [
                {"name": "code", "valueCodeableConcept": {"text": "systolic"}},
                {"name": "value", "valueQuantity": {"value": FhirDecimal("120.0"), "unit": "mmHg"}},
            ]
        }
        result = fhirpath(observation(), operation("add", "Observation", name="component", value=value))
        assert result["component"] == [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": FhirDecimal("120.0"), "unit": "mmHg"}}
        ]
        untyped = {"part": [{"name": "value", "part": [{"name": "value", "valueDecimal": 1}]}]}
        raises(
            InvalidRequest,
            "Parameters.parameter[0].part[3].part[0]",
            fhirpath,
            observation(),
            operation("add", "Observation", name="component", value=untyped),
        )

    def test_add_appends_to_a_repeating_element(self) -> None:
        value = {"valueIdentifier": {"system": EXAMPLE_ORG, "value": "value 5"}}
        result = fhirpath(patient(), operation("add", "Patient", name="identifier", value=value))
        assert [i["value"] for i in result["identifier"]] == [
            "value 1",
            "value 2",
            "value 3",
            "value 4",
            "value 5",
        ]
        empty = patient()
        del empty["identifier"]
        assert fhirpath(empty, operation("add", "Patient", name="identifier", value=value))["identifier"] == [
            {"system": EXAMPLE_ORG, "value": "value 5"}
        ]

    def test_add_choice_element_by_base_name(self) -> None:
        result = fhirpath(
            patient(), operation("add", "Patient", name="deceased", value={"valueBoolean": False})
        )
        assert result["deceasedBoolean"] is False and "deceased" not in result
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(deceasedDateTime="2020"),
            operation("add", "Patient", name="deceased", value={"valueBoolean": True}),
        )
        raises(
            ValidationFailed,
            "Parameters.parameter[0].part[3]",
            fhirpath,
            patient(),
            operation("add", "Patient", name="deceased", value={"valueQuantity": {"value": 1}}),
        )

    def test_add_existing_non_repeating_element_fails(self) -> None:
        error = raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"}),
        )
        assert "replace" in error.diagnostics

    def test_spec_case_operation_on_missing_element(self) -> None:
        resource = patient(identifier=[{"use": "official", "value": "123"}])
        path = "Patient.identifier.where(use = 'official').period"
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            resource,
            operation("add", path, name="end", value={"valueDate": "2021-12-01"}),
        )

    def test_add_extension_to_a_primitive_goes_into_its_underscore_object(self) -> None:
        extension = {"part": [{"name": "url", "valueUri": "http://x"}, {"name": "value", "valueString": "v"}]}
        result = fhirpath(patient(), operation("add", "Patient.birthDate", name="extension", value=extension))
        assert result["_birthDate"]["extension"][-1] == {"url": "http://x", "valueString": "v"}
        name = {"given": ["Peter", "James"]}
        result = fhirpath(
            patient(name=[name]), operation("add", "Patient.name.given[1]", name="extension", value=extension)
        )
        assert result["name"][0]["_given"] == [None, {"extension": [{"url": "http://x", "valueString": "v"}]}]
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("add", "Patient.birthDate", name="family", value={"valueString": "x"}),
        )


class TestFhirPathInsertAndMove:
    def test_spec_example_insert_into_given(self) -> None:
        result = fhirpath(
            patient(), operation("insert", "Patient.name[0].given", index=1, value={"valueString": "J"})
        )
        assert result["name"][0]["given"] == ["Peter", "J", "James"]

    def test_insert_identifier_at_start_and_end(self) -> None:
        value = {"valueIdentifier": {"system": EXAMPLE_ORG, "value": "value 0"}}
        result = fhirpath(patient(), operation("insert", "Patient.identifier", index=0, value=value))
        assert [i["value"] for i in result["identifier"]][:2] == ["value 0", "value 1"]
        result = fhirpath(patient(), operation("insert", "Patient.identifier", index=4, value=value))
        assert result["identifier"][4]["value"] == "value 0"

    def test_insert_beyond_the_end_fails(self) -> None:
        error = raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("insert", "Patient.name[0].given", index=3, value={"valueString": "x"}),
        )
        assert "beyond" in error.diagnostics

    def test_insert_keeps_primitive_extensions_aligned(self) -> None:
        name = {"given": ["Peter", "James"], "_given": [None, {"id": "j"}]}
        result = fhirpath(
            patient(name=[name]),
            operation(
                "insert",
                "Patient.name.given",
                index=0,
                value={"valueString": "A", "_valueString": {"id": "a"}},
            ),
        )
        assert result["name"][0] == {
            "given": ["A", "Peter", "James"],
            "_given": [{"id": "a"}, None, {"id": "j"}],
        }
        plain = {"given": ["Peter"]}
        result = fhirpath(
            patient(name=[plain]),
            operation(
                "insert",
                "Patient.name.given",
                index=1,
                value={"valueString": "B", "_valueString": {"id": "b"}},
            ),
        )
        assert result["name"][0] == {"given": ["Peter", "B"], "_given": [None, {"id": "b"}]}

    def test_insert_into_a_single_valued_element_fails(self) -> None:
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("insert", "Patient.birthDate", index=0, value={"valueDate": "2000"}),
        )

    def test_insert_path_must_end_with_an_element_name(self) -> None:
        raises(
            InvalidRequest,
            "Parameters.parameter[0].part[1]",
            fhirpath,
            patient(),
            operation("insert", "Patient.identifier[0]", index=0, value={"valueString": "x"}),
        )

    @pytest.mark.parametrize(
        ("source", "destination", "expected"),
        [(3, 1, [1, 4, 2, 3]), (3, 0, [4, 1, 2, 3]), (3, 2, [1, 2, 4, 3]), (0, 3, [2, 3, 4, 1])],
    )
    def test_spec_examples_move_within_identifier(
        self, source: int, destination: int, expected: list[int]
    ) -> None:
        result = fhirpath(
            patient(), operation("move", "Patient.identifier", source=source, destination=destination)
        )
        assert [i["value"] for i in result["identifier"]] == [f"value {n}" for n in expected]

    def test_move_out_of_range_fails(self) -> None:
        error = raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("move", "Patient.identifier", source=4, destination=0),
        )
        assert "source 4" in error.diagnostics

    def test_move_keeps_primitive_extensions_aligned(self) -> None:
        name = {"given": ["A", "B", "C"], "_given": [{"id": "a"}]}
        result = fhirpath(
            patient(name=[name]), operation("move", "Patient.name[0].given", source=0, destination=2)
        )
        assert result["name"][0] == {"given": ["B", "C", "A"], "_given": [None, None, {"id": "a"}]}


class TestFhirPathDelete:
    def test_spec_example_delete_birth_date_with_its_extensions(self) -> None:
        result = fhirpath(patient(), operation("delete", "Patient.birthDate"))
        assert "birthDate" not in result and "_birthDate" not in result

    def test_delete_of_nothing_is_not_an_error(self) -> None:
        assert fhirpath(patient(), operation("delete", "Patient.gender")) == patient()
        assert fhirpath(patient(), operation("delete", "Observation.status")) == patient()

    def test_delete_of_several_fails(self) -> None:
        raises(
            ValidationFailed,
            "Parameters.parameter[0]",
            fhirpath,
            patient(),
            operation("delete", "Patient.identifier"),
        )

    def test_delete_list_items_and_emptied_containers(self) -> None:
        result = fhirpath(patient(), operation("delete", "Patient.identifier[1]"))
        assert [i["value"] for i in result["identifier"]] == ["value 1", "value 3", "value 4"]
        resource = patient(identifier=[{"system": EXAMPLE_ORG}])
        assert "identifier" not in fhirpath(resource, operation("delete", "Patient.identifier.system"))

    def test_spec_case_delete_skips_level(self) -> None:
        resource = patient(contact=[{"name": {"text": "a name"}, "gender": "male"}])
        result = fhirpath(resource, operation("delete", "Patient.contact[0].name.text"))
        assert result["contact"] == [{"gender": "male"}]

    def test_delete_primitive_array_item_keeps_alignment(self) -> None:
        name = {"given": ["A", "B", "C"], "_given": [None, {"id": "b"}, {"id": "c"}]}
        result = fhirpath(patient(name=[name]), operation("delete", "Patient.name.given[1]"))
        assert result["name"][0] == {"given": ["A", "C"], "_given": [None, {"id": "c"}]}
        result = fhirpath(patient(name=[name]), operation("delete", "Patient.name.given[2]"))
        assert result["name"][0] == {"given": ["A", "B"], "_given": [None, {"id": "b"}]}

    def test_delete_extension_of_primitive_by_url(self) -> None:
        result = fhirpath(patient(), operation("delete", f"Patient.birthDate.extension('{BIRTH_TIME}')"))
        assert result["birthDate"] == "1974-12-25" and "_birthDate" not in result

    def test_deleting_only_extension_of_a_valueless_array_item_removes_the_item(self) -> None:
        name = {"given": ["A", None], "_given": [None, {"extension": [{"url": "u", "valueString": "x"}]}]}
        result = fhirpath(patient(name=[name]), operation("delete", "Patient.name.given[1].extension('u')"))
        assert result["name"][0] == {"given": ["A"]}

    def test_delete_resource_fails(self) -> None:
        raises(
            ValidationFailed, "Parameters.parameter[0]", fhirpath, patient(), operation("delete", "Patient")
        )


class TestFhirPathDocument:
    def test_empty_parameters_change_nothing(self) -> None:
        resource = patient()
        result = apply_fhirpath_patch(resource, {"resourceType": "Parameters"})
        assert result == resource and result is not resource

    def test_inputs_are_not_mutated_and_values_are_not_shared(self) -> None:
        resource = patient()
        body = parameters(
            operation("add", "Patient", name="identifier", value={"valueIdentifier": {"value": "new"}}),
            operation("delete", "Patient.name[0].given[0]"),
            operation("move", "Patient.identifier", source=0, destination=3),
        )
        before_resource, before_body = copy.deepcopy(resource), copy.deepcopy(body)
        result = apply_fhirpath_patch(resource, body)
        assert resource == before_resource and body == before_body
        result["identifier"][-1]["value"] = "changed"
        assert body == before_body

    @pytest.mark.parametrize(
        ("body", "expression"),
        [
            ([], "Parameters"),
            ({"resourceType": "Patient"}, "Parameters"),
            ({"resourceType": "Parameters", "parameter": {}}, "Parameters.parameter"),
            (parameters({"name": "op", "part": []}), "Parameters.parameter[0]"),
            (parameters({"name": "operation"}), "Parameters.parameter[0]"),
            (parameters(operation("upsert", "Patient")), "Parameters.parameter[0].part[0]"),
            (
                parameters(operation("insert", "Patient.identifier", value={"valueString": "x"})),
                "Parameters.parameter[0]",
            ),
            (parameters(operation("add", "Patient", value={"valueString": "x"})), "Parameters.parameter[0]"),
            (
                parameters(operation("move", "Patient.identifier", source=-1, destination=0)),
                "Parameters.parameter[0].part[2]",
            ),
            (
                parameters(
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "delete"},
                            {"name": "path", "valueString": "Patient.a"},
                            {"name": "path", "valueString": "Patient.b"},
                        ],
                    }
                ),
                "Parameters.parameter[0].part[2]",
            ),
            (
                parameters(
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "delete"},
                            {"name": "colour", "valueString": "red"},
                        ],
                    }
                ),
                "Parameters.parameter[0].part[1]",
            ),
            (parameters(operation("delete", "")), "Parameters.parameter[0].part[1]"),
            (
                parameters(
                    operation("replace", "Patient.active", value={"valueBoolean": True, "valueString": "x"})
                ),
                "Parameters.parameter[0].part[2]",
            ),
            (parameters(operation("replace", "Patient.active", value={})), "Parameters.parameter[0].part[2]"),
            (
                parameters(
                    operation("add", "Patient", name="contact", value={"part": [{"valueString": "x"}]})
                ),
                "Parameters.parameter[0].part[3].part[0]",
            ),
        ],
    )
    def test_malformed_patch(self, body: Any, expression: str) -> None:
        raises(InvalidRequest, expression, apply_fhirpath_patch, patient(), body)

    @pytest.mark.parametrize(
        "path",
        [
            "Patient.name.resolve()",
            "Patient.name[",
            "Patient..name",
            "Patient.name.where()",
            "Patient.name.where(family = = 'x')",
            "Patient.name.where(nosuchfunction())",
            "Patient.name | Patient.identifier",
            "Patient.extension(url)",
        ],
    )
    def test_malformed_path(self, path: str) -> None:
        raises(
            InvalidRequest, "Parameters.parameter[0].part[1]", fhirpath, patient(), operation("delete", path)
        )

    def test_where_criteria_are_evaluated_by_fhirpath(self) -> None:
        resource = observation(
            component=[
                {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}},
                {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80}},
            ]
        )
        result = fhirpath(resource, operation("delete", "Observation.component.where(value.value < 100)"))
        assert [c["code"]["text"] for c in result["component"]] == ["systolic"]
        result = fhirpath(patient(), operation("delete", "Patient.name.given.where($this = 'James')"))
        assert result["name"][0]["given"] == ["Peter"]

    def test_operations_apply_in_order_on_the_result_so_far(self) -> None:
        result = fhirpath(
            patient(),
            operation("add", "Patient", name="gender", value={"valueCode": "male"}),
            operation("replace", "Patient.gender", value={"valueCode": "female"}),
            operation("delete", "Patient.active"),
        )
        assert result["gender"] == "female" and "active" not in result

"""SMART scopes v1 and v2: parsing, the questions the enforcement layer asks, narrowing to what a client may have."""

from __future__ import annotations

import pytest

from fhir_server.auth import scopes as sc

TYPES = {"Observation", "Patient", "Condition", "Encounter"}


@pytest.mark.parametrize(("text", "context", "rtype", "perms", "v1"), [
    ("patient/Observation.read", "patient", "Observation", "rs", True),
    ("patient/Observation.write", "patient", "Observation", "cud", True),
    ("user/*.*", "user", "*", "cruds", True),
    ("patient/Observation.rs", "patient", "Observation", "rs", False),
    ("user/*.cruds", "user", "*", "cruds", False),
    ("system/Patient.r", "system", "Patient", "r", False),
    ("user/Condition.cd", "user", "Condition", "cd", False),
])
def test_parse_v1_and_v2(text: str, context: str, rtype: str, perms: str, v1: bool) -> None:
    scope = sc.parse_resource_scope(text, TYPES)
    assert (scope.context, scope.resource_type, scope.permissions, scope.v1) == (context, rtype, frozenset(perms), v1)
    assert scope.query == ()


def test_parse_query_restricted_v2_scope() -> None:
    text = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    scope = sc.parse_resource_scope(text, TYPES)
    assert scope.permissions == frozenset("rs")
    assert scope.query == (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)
    two = sc.parse_resource_scope("user/Observation.s?category=vital-signs&status=final")
    assert two.query == (("category", "vital-signs"), ("status", "final"))


@pytest.mark.parametrize("text", [
    "patient/Observation.sr",  # out of order
    "patient/Observation.rr",  # repeated
    "patient/Observation.x",  # unknown letter
    "patient/Observation.",  # no permissions
    "doctor/Observation.rs",  # unknown context
    "patient/observation.rs",  # not a type
    "patient/Nonsense.rs",  # not an R4 type
    "patient/Observation.read?category=x",  # v1 with a query
    "patient/Observation.rs?",  # empty query
    "patient/Observation.rs?=x",  # nameless parameter
    "patient/Observation.rs?category",  # not name=value
    "Observation.rs",
])
def test_malformed_scopes_are_refused(text: str) -> None:
    with pytest.raises(sc.ScopeError):
        sc.parse_resource_scope(text, TYPES)


def test_scope_set_keeps_special_scopes_and_reports_invalid_ones() -> None:
    s = sc.ScopeSet.parse("openid fhirUser launch/patient patient/Observation.rs bogus patient/Foo.rs "
                          "offline_access", TYPES)
    assert sc.OPENID in s and sc.LAUNCH_PATIENT in s and sc.OFFLINE_ACCESS in s
    assert "bogus" not in s
    assert s.invalid == ("bogus", "patient/Foo.rs")
    assert s.names() == ["openid", "fhirUser", "launch/patient", "patient/Observation.rs", "offline_access"]


def test_access_answers_may_and_restrictions() -> None:
    s = sc.ScopeSet.parse("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs "
                          "user/Patient.r user/*.s patient/Condition.cruds", TYPES)
    assert s.may("read", "Observation", "patient")
    assert s.may("search-type", "Observation", "patient")
    assert not s.may("update", "Observation")
    assert not s.may("read", "Observation", "user")  # user/*.s grants search, not read
    assert s.may("search-type", "Encounter", "user")
    assert s.may("create", "Condition", "patient") and s.may("delete", "Condition")
    lab = s.search_restriction("Observation", "patient")
    assert lab.allowed and not lab.unrestricted
    assert lab.queries == ((("category", "laboratory"),), (("category", "vital-signs"),))
    assert s.search_restriction("Observation", "user").unrestricted  # user/*.s
    assert s.search_restriction("Condition", "patient").unrestricted
    assert not s.search_restriction("Observation", "system").allowed
    assert s.access("r", "Observation").restriction("patient").queries == lab.queries
    assert not s.access("u", "Patient").allowed


def test_an_unrestricted_scope_beats_a_query_restricted_one_in_the_same_context() -> None:
    s = sc.ScopeSet.parse("patient/Observation.rs?category=laboratory patient/*.rs", TYPES)
    assert s.search_restriction("Observation", "patient").unrestricted


def test_v1_read_means_read_and_search_write_means_create_update_delete() -> None:
    s = sc.ScopeSet.parse("patient/Observation.read user/Encounter.write", TYPES)
    assert s.may("r", "Observation") and s.may("s", "Observation") and not s.may("c", "Observation")
    assert all(s.may(p, "Encounter") for p in "cud") and not s.may("r", "Encounter")


def test_access_refuses_unknown_permission_letters() -> None:
    with pytest.raises(ValueError):
        sc.ScopeSet.parse("user/*.rs").access("x", "Patient")


def test_narrow_keeps_what_the_client_may_have() -> None:
    allowed = sc.ScopeSet.parse("patient/*.rs user/Observation.cruds openid launch/patient")
    requested = sc.ScopeSet.parse("patient/Observation.cruds user/Observation.read patient/Observation.rs?code=x "
                                  "system/*.rs openid offline_access launch/patient")
    got = sc.narrow_set(requested, allowed)
    assert got.names() == ["patient/Observation.rs", "user/Observation.read", "patient/Observation.rs?code=x",
                           "openid", "launch/patient"]


def test_narrow_respects_query_restricted_allowances() -> None:
    allowed = [sc.parse_resource_scope("patient/Observation.rs?category=laboratory")]
    assert sc.narrow(sc.parse_resource_scope("patient/Observation.rs"), allowed) == []
    same = sc.parse_resource_scope("patient/Observation.r?category=laboratory")
    assert sc.narrow(same, allowed) == [same]


def test_narrow_cuts_a_wildcard_down_to_the_allowed_types() -> None:
    allowed = [sc.parse_resource_scope("system/Observation.cruds"), sc.parse_resource_scope("system/Patient.r"),
               sc.parse_resource_scope("patient/Condition.rs")]
    got = sc.narrow(sc.parse_resource_scope("system/*.rs"), allowed)
    assert [s.text for s in got] == ["system/Observation.rs", "system/Patient.r"]
    assert got[0].grants("s", "Observation") and not got[0].grants("r", "Patient")


def test_without_drops_contexts_and_names() -> None:
    s = sc.ScopeSet.parse("system/*.rs patient/*.rs launch openid")
    assert sc.without(s, contexts=("system",), names={"launch"}).names() == ["patient/*.rs", "openid"]

"""Role policies, the patient context and scopes, as reaches; and how a reach becomes search criteria and decides
about one resource body (any version) without the store."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.auth.policy import (
    DIRECTORY,
    FINANCIAL,
    ROLE_POLICIES,
    AccessPolicy,
    Patients,
    clinical_types,
    relative,
)
from fhir_server.auth.reach import ReachCompiler
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.definitions import load_definitions
from fhir_server.indexing.extract import Indexer
from fhir_server.search.registry import SearchRegistry

DEFS = load_definitions()
INDEXER = Indexer.from_definitions(DEFS)
COMPILER = ReachCompiler(DEFS, SearchRegistry(INDEXER, DEFS.resource_types), INDEXER)
LINKED = COMPILER.linked_types


def context(kind: str, scope: str, *, roles: tuple[str, ...] = (), patient: str | None = None,
            fhir_user: str | None = None) -> AccessContext:
    return AccessContext(subject="u-x", client_id="app", scopes=ScopeSet.parse(scope, DEFS.resource_types),
                         kind=kind, token_id=f"t-{kind}-{scope}-{roles}", issued_at=0, expires_at=0,  # type: ignore[arg-type]
                         fhir_user=fhir_user, patient=patient, roles=frozenset(roles))


def policy(kind: str, scope: str, **kwargs: Any) -> AccessPolicy:
    break_glass = kwargs.pop("break_glass", False)
    return AccessPolicy(context(kind, scope, **kwargs), LINKED, break_glass)


async def never(ids: frozenset[str], carers: tuple[str, ...]) -> frozenset[str]:
    return frozenset()


async def always(ids: frozenset[str], carers: tuple[str, ...]) -> frozenset[str]:
    return ids


def obs(patient: str, category: str = "laboratory") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": category}]}],
            "subject": {"reference": f"Patient/{patient}"}}


def test_billing_clerks_see_money_and_demographics_not_clinical_data() -> None:
    clerk = policy("staff", "user/*.cruds", roles=("billing-clerk",))
    for rtype in ("Invoice", "Account", "Coverage", "ChargeItem", "Claim", "ExplanationOfBenefit"):
        assert clerk.reach("r", rtype).unrestricted and clerk.reach("s", rtype).unrestricted
    assert clerk.reach("r", "Patient").unrestricted and not clerk.reach("u", "Patient").allowed
    for rtype in ("Observation", "Condition", "DocumentReference", "Composition", "MedicationRequest", "Encounter"):
        assert not clerk.reach("r", rtype).allowed, rtype
    assert not clerk.reach("d", "Invoice").allowed


def test_every_role_is_in_the_table_and_clinical_types_exclude_money() -> None:
    assert set(ROLE_POLICIES) == {"physician", "nurse", "lab-technician", "pharmacist", "billing-clerk",
                                  "administrator"}
    clinical = clinical_types(LINKED)
    assert {"Observation", "Condition", "Encounter", "DocumentReference", "MedicationRequest"} <= clinical
    assert not clinical & FINANCIAL and "Patient" not in clinical and "AuditEvent" not in clinical


def test_physicians_reach_their_patients_and_break_glass_reaches_everyone() -> None:
    doc = policy("staff", "user/*.cruds", roles=("physician",), fhir_user="https://h.example/fhir/Practitioner/p1")
    reach = doc.reach("r", "Observation")
    assert reach.allowed and not reach.unrestricted
    assert reach.paths[0].patients == Patients(care_of=("Practitioner/p1",))
    assert doc.reach("r", "Patient").unrestricted  # demographics of anyone: finding and registering patients
    assert not doc.reach("r", "Invoice").allowed and not doc.reach("r", "AuditEvent").allowed
    glass = policy("staff", "user/*.cruds", roles=("physician",), fhir_user="Practitioner/p1", break_glass=True)
    assert glass.reach("r", "Observation").unrestricted and glass.break_glass
    # no practitioner: no care relationship is possible
    lone = policy("staff", "user/*.cruds", roles=("nurse",))
    assert lone.reach("r", "Observation").paths[0].patients == Patients(ids=frozenset())
    assert not lone.reach("d", "Observation").allowed  # nurses do not delete clinical records


def test_scopes_limit_roles_and_roles_limit_scopes() -> None:
    doc = policy("staff", "user/Observation.rs", roles=("physician",), fhir_user="Practitioner/p1")
    assert doc.reach("r", "Observation").allowed and not doc.reach("c", "Observation").allowed
    assert not doc.reach("r", "Condition").allowed
    clerk = policy("staff", "user/Observation.rs user/Invoice.r", roles=("billing-clerk",))
    assert not clerk.reach("r", "Observation").allowed and clerk.reach("r", "Invoice").allowed
    assert not clerk.reach("s", "Invoice").allowed
    assert not policy("staff", "user/*.cruds").reach("r", "Patient").allowed  # no role, no access


def test_patient_context() -> None:
    alice = policy("patient", "patient/*.cruds", patient="pat-a", fhir_user="Patient/pat-a")
    assert alice.hides_existence
    assert alice.reach("r", "Observation").paths[0].patients == Patients(ids=frozenset({"pat-a"}))
    assert alice.reach("r", "Patient").paths[0].patients.ids == {"pat-a"}
    assert not alice.reach("c", "Patient").allowed and not alice.reach("d", "Patient").allowed
    assert alice.reach("r", "Practitioner").unrestricted and not alice.reach("c", "Practitioner").allowed
    assert not alice.reach("r", "Group").allowed  # a Group of patients lists others
    assert not alice.reach("r", "Contract").allowed  # outside any compartment and not a directory resource
    assert not alice.reach("c", "AuditEvent").allowed and alice.reach("r", "AuditEvent").allowed
    # user/ scopes of a patient user reach the same record; patient/ scopes need a patient in context
    assert policy("patient", "user/Observation.rs", fhir_user="Patient/pat-a").reach(
        "r", "Observation").paths[0].patients.ids == {"pat-a"}
    assert not policy("patient", "patient/*.rs", fhir_user="Patient/pat-a").reach("r", "Observation").allowed


def test_a_staff_patient_context_is_limited_by_the_role_too() -> None:
    nurse = policy("staff", "patient/*.rs", roles=("nurse",), patient="pat-b", fhir_user="Practitioner/n")
    patients = nurse.reach("r", "Observation").paths[0].patients
    assert patients.ids == {"pat-b"} and patients.care_of == ("Practitioner/n",)
    clerk = policy("staff", "patient/*.rs", roles=("billing-clerk",), patient="pat-b")
    assert not clerk.reach("r", "Observation").allowed and clerk.reach("r", "Invoice").allowed


def test_audit_events_are_never_changed_through_the_api() -> None:
    system = policy("system", "system/*.cruds")
    assert system.reach("c", "AuditEvent").unrestricted and system.reach("r", "AuditEvent").unrestricted
    assert not system.reach("u", "AuditEvent").allowed and not system.reach("d", "AuditEvent").allowed
    admin = policy("staff", "user/*.cruds", roles=("administrator",))
    assert admin.reach("s", "AuditEvent").unrestricted and not admin.reach("c", "AuditEvent").allowed
    assert not admin.reach("r", "Observation").allowed
    # administrators keep the hospital's own resources, not patients' ones of those types
    assert admin.reach("c", "Basic").paths[0].patients == Patients(unlinked=True)
    assert admin.reach("r", "Practitioner").unrestricted


def test_v1_scopes() -> None:
    alice = policy("patient", "patient/Observation.read patient/Patient.read", patient="pat-a")
    assert alice.reach("r", "Observation").allowed and alice.reach("s", "Observation").allowed
    assert not alice.reach("u", "Observation").allowed and not alice.reach("r", "Condition").allowed


async def test_a_reach_decides_about_one_resource() -> None:
    alice = policy("patient", "patient/Observation.rs?category=laboratory", patient="pat-a")
    reach = alice.reach("r", "Observation")
    assert await COMPILER.admits("Observation", obs("pat-a"), reach, never)
    assert not await COMPILER.admits("Observation", obs("pat-a", "vital-signs"), reach, never)
    assert not await COMPILER.admits("Observation", obs("pat-b"), reach, never)
    doc = policy("staff", "user/*.cruds", roles=("physician",), fhir_user="Practitioner/p1").reach("r", "Observation")
    assert await COMPILER.admits("Observation", obs("pat-b"), doc, always)
    assert not await COMPILER.admits("Observation", obs("pat-b"), doc, never)
    # a resource of no patient is never in a patient limit; Patient.link does not bring in another patient
    assert not await COMPILER.admits("Observation", {"resourceType": "Observation", "id": "x"}, reach, never)
    linked = {"resourceType": "Patient", "id": "pat-b", "link": [{"other": {"reference": "Patient/pat-a"},
                                                                  "type": "seealso"}]}
    own = policy("patient", "patient/*.rs", patient="pat-a").reach("r", "Patient")
    assert not await COMPILER.admits("Patient", linked, own, never)
    assert await COMPILER.admits("Patient", {**linked, "id": "pat-a"}, own, never)


def test_reach_criteria() -> None:
    alice = policy("patient", "patient/*.rs", patient="pat-a")
    criterion = COMPILER.criterion("Observation", alice.reach("s", "Observation"))
    assert criterion is not None and "pat-a" in repr(criterion) and "performer" in repr(criterion)
    assert COMPILER.criterion("Practitioner", alice.reach("s", "Practitioner")) is None
    assert COMPILER.criterion("Observation", policy("system", "system/*.rs").reach("s", "Observation")) is None
    assert COMPILER.patients_of("Observation", obs("pat-b")) == {"pat-b"}
    assert COMPILER.patients_of("Patient", {"resourceType": "Patient", "id": "p"}) == {"p"}


@pytest.mark.parametrize(("reference", "expected"), [
    ("Practitioner/p1", "Practitioner/p1"), ("https://h.example/fhir/Patient/x", "Patient/x"), (None, ""),
])
def test_relative_references(reference: str | None, expected: str) -> None:
    assert relative(reference) == expected


def test_directory_types_are_not_patient_data() -> None:
    assert not DIRECTORY & LINKED

"""Who may do what to which resources: SMART scopes intersected with the staff role policies, break-glass, and the
patient context.  Pure: it answers with :class:`Reach` values; :mod:`fhir_server.auth.reach` turns them into search
criteria and in-memory checks, and the scoped repository (:mod:`fhir_server.storage.scoped`) applies them.

A token reaches a resource through any of its scopes' contexts (SMART scopes are additive):

* ``patient/…`` scopes reach the data of the patient in context (the token's ``patient``): the Patient itself, the
  resources in its Patient compartment (the R4 CompartmentDefinition, plus ``Device.patient`` and
  ``Task.patient``), and — read-only — the shared directory resources (practitioners, organizations, locations,
  medications, definitions: :data:`DIRECTORY`).  Other patients' data, patient Groups and resources outside any
  compartment are never in reach.
* ``user/…`` scopes reach what the user may reach: a patient user their own record (as above); a staff user what
  their roles allow (:data:`ROLE_POLICIES`), never more than the scopes.
* ``system/…`` scopes (Backend Services) reach every resource of the types they name.

A staff token's ``patient/…`` scopes are limited by the staff roles too (the EHR launch does not widen a role).
Audit records are never changed through the API: ``AuditEvent`` can only be created by system clients, and never
updated or deleted.

Role policies (one table, documented in docs/auth.md).  ``care`` means: only patients in a care relationship with
the user's Practitioner — the patient's ``generalPractitioner``, or a participant of one of the patient's
Encounters or CareTeams, or the care manager of one of its EpisodeOfCare.  An active **break-glass** grant turns
``care`` into every patient for its duration (and every request under it is audited with purpose ``BTG``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from fhir_server.auth.scopes import CONTEXTS, Context, Query
from fhir_server.auth.tokens import AccessContext

PatientScope = Literal["any", "care", "unlinked"]

#: types that link a resource to a patient beyond the R4 Patient CompartmentDefinition; a Subscription belongs to
#: the patient who wrote it (its server-stamped ``owner``, :mod:`fhir_server.auth.stamps`)
EXTRA_LINKS: Mapping[str, tuple[str, ...]] = {"Device": ("patient",), "Task": ("patient",),
                                              "Subscription": ("owner",)}

#: patient-linked types that are not clinical data: a patient's own Subscriptions are theirs alone
OWNED: frozenset[str] = frozenset({"Subscription"})

#: shared, non-patient resources every authenticated reader may need: who and where care happens, what medicines
#: and definitions exist.  Patient contexts may read and search them (never write).
DIRECTORY: frozenset[str] = frozenset({
    "Practitioner", "PractitionerRole", "Organization", "OrganizationAffiliation", "Location", "HealthcareService",
    "Endpoint", "Medication", "MedicationKnowledge", "Substance", "InsurancePlan", "Slot", "DeviceDefinition",
    "ChargeItemDefinition", "ActivityDefinition", "PlanDefinition", "Questionnaire", "ObservationDefinition",
    "SpecimenDefinition", "ValueSet", "CodeSystem", "ConceptMap", "NamingSystem", "StructureDefinition",
    "SearchParameter", "OperationDefinition", "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide",
    "Library", "Measure", "CatalogEntry", "TerminologyCapabilities", "StructureMap", "GraphDefinition",
    "MessageDefinition", "EventDefinition",
})

DEMOGRAPHIC: frozenset[str] = frozenset({"Patient", "RelatedPerson", "Person"})

FINANCIAL: frozenset[str] = frozenset({
    "Account", "ChargeItem", "Claim", "ClaimResponse", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "EnrollmentRequest", "EnrollmentResponse", "ExplanationOfBenefit", "Invoice",
    "PaymentNotice", "PaymentReconciliation",
})

SCHEDULING: frozenset[str] = frozenset({"Appointment", "AppointmentResponse", "Schedule", "Slot"})

#: the hospital's own configuration and resources that are not about one patient
ADMINISTRATIVE: frozenset[str] = frozenset({
    "Practitioner", "PractitionerRole", "Organization", "OrganizationAffiliation", "Location", "HealthcareService",
    "Endpoint", "Schedule", "Slot", "Device", "DeviceDefinition", "Basic", "Task", "Group", "Subscription",
    "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap", "NamingSystem", "StructureDefinition",
    "Questionnaire", "InsurancePlan", "ChargeItemDefinition", "Library", "Measure", "ActivityDefinition",
    "PlanDefinition",
})

#: resources never reachable in a patient context, although R4 puts them in the Patient compartment: a Group of
#: patients lists other patients
PATIENT_CONTEXT_EXCLUDED: frozenset[str] = frozenset({"Group"})

AUDIT = "AuditEvent"
BREAK_GLASS_ROLES: frozenset[str] = frozenset({"physician", "nurse"})


def clinical_types(linked: Collection[str]) -> frozenset[str]:
    """Patient data that is clinical: every patient-linked type but demographics, money, scheduling, audit,
    patient groups and what patients own (their Subscriptions)."""
    return frozenset(linked) - DEMOGRAPHIC - FINANCIAL - SCHEDULING - OWNED - {AUDIT, "Group"}


@dataclass(frozen=True)
class Grant:
    """A role may use ``permissions`` (letters of ``cruds``) on ``types`` for the patients ``patients`` says."""

    types: frozenset[str] | Literal["clinical"]
    permissions: str
    patients: PatientScope = "any"


LAB_TYPES = frozenset({"ServiceRequest", "Specimen", "Observation", "DiagnosticReport", "Task", "Media"})

ROLE_POLICIES: Mapping[str, tuple[Grant, ...]] = {
    "physician": (
        Grant(DEMOGRAPHIC, "crus"),
        Grant("clinical", "cruds", "care"),
        Grant(SCHEDULING, "crus", "care"),
        Grant(DIRECTORY, "rs"),
    ),
    "nurse": (
        Grant(DEMOGRAPHIC, "rus"),
        Grant("clinical", "crus", "care"),
        Grant(SCHEDULING, "crus", "care"),
        Grant(DIRECTORY, "rs"),
    ),
    "lab-technician": (
        Grant(DEMOGRAPHIC, "rs"),
        Grant(frozenset({"ServiceRequest"}), "rus"),
        Grant(LAB_TYPES - {"ServiceRequest"}, "crus"),
        Grant(DIRECTORY, "rs"),
    ),
    "pharmacist": (
        Grant(DEMOGRAPHIC, "rs"),
        Grant(frozenset({"MedicationRequest"}), "rus"),
        Grant(frozenset({"MedicationDispense"}), "crus"),
        Grant(frozenset({"MedicationAdministration", "MedicationStatement", "AllergyIntolerance"}), "rs"),
        Grant(frozenset({"Medication", "MedicationKnowledge", "Substance"}), "cruds"),
        Grant(DIRECTORY, "rs"),
    ),
    "billing-clerk": (
        Grant(frozenset({"Patient", "RelatedPerson"}), "rs"),
        Grant(FINANCIAL, "crus"),
        Grant(DIRECTORY, "rs"),
    ),
    "administrator": (
        Grant(DEMOGRAPHIC, "crus"),
        Grant(SCHEDULING, "cruds"),
        Grant(frozenset({AUDIT}), "rs"),
        Grant(ADMINISTRATIVE, "cruds", "unlinked"),
        Grant(DIRECTORY, "rs"),
    ),
}


@dataclass(frozen=True)
class Patients:
    """Which patients' data a path reaches: all of them (the default), only ``ids``, only those in a care
    relationship with ``care_of`` (Practitioner/PractitionerRole references), only resources linked to no patient
    (``unlinked``); several limits all apply.  Irrelevant for types that are not linked to patients."""

    ids: frozenset[str] | None = None
    care_of: tuple[str, ...] | None = None
    unlinked: bool = False

    @property
    def limited(self) -> bool:
        return self.ids is not None or self.care_of is not None or self.unlinked

    def intersect(self, other: Patients) -> Patients:
        ids = self.ids if other.ids is None else other.ids if self.ids is None else self.ids & other.ids
        care: tuple[str, ...] | None
        if self.care_of is None or other.care_of is None:
            care = self.care_of if other.care_of is None else other.care_of
        else:
            care = tuple(r for r in self.care_of if r in other.care_of)
        return Patients(ids, care, self.unlinked or other.unlinked)


ANY_PATIENT = Patients()


@dataclass(frozen=True)
class Path:
    """One way of reaching resources of a type: a patient limit and the scope's queries (any of them must match;
    none: no query limit)."""

    patients: Patients = ANY_PATIENT
    queries: tuple[Query, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return not self.patients.limited and not self.queries


@dataclass(frozen=True)
class Reach:
    """The resources of one type one permission reaches: those any path reaches (no path: none)."""

    paths: tuple[Path, ...] = ()
    allowed: bool = field(init=False, compare=False)
    unrestricted: bool = field(init=False, compare=False)  # asked on every request: computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", bool(self.paths))
        object.__setattr__(self, "unrestricted", any(p.unrestricted for p in self.paths))

    def __or__(self, other: Reach) -> Reach:
        if self.unrestricted:
            return self
        if other.unrestricted:
            return other
        return Reach(tuple(dict.fromkeys((*self.paths, *other.paths))))


NOWHERE = Reach()
EVERYWHERE = Reach((Path(),))


@dataclass
class AccessPolicy:
    """What one access token (and its user's roles and break-glass state) reaches.  Answers are cached: build one
    per token (``PolicyBuilder`` keeps them)."""

    context: AccessContext
    linked: frozenset[str]
    break_glass: bool = False
    _cache: dict[tuple[str, str], Reach] = field(default_factory=dict, repr=False)

    @property
    def hides_existence(self) -> bool:
        """Patients must not learn that other patients' resources exist: out-of-reach reads answer 404."""
        return self.context.kind == "patient"

    @property
    def own_patient(self) -> str | None:
        """The patient a patient user is (from ``fhirUser``, else the launch context)."""
        fhir_user = relative(self.context.fhir_user)
        if fhir_user.startswith("Patient/"):
            return fhir_user.split("/", 1)[1]
        return self.context.patient if self.context.kind == "patient" else None

    def reach(self, permission: str, resource_type: str) -> Reach:
        key = (permission, resource_type)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._reach(permission, resource_type)
        return cached

    def visible(self, resource_type: str) -> Reach:
        """What a reader sees of a type: what it may read or search."""
        return self.reach("r", resource_type) | self.reach("s", resource_type)

    def _reach(self, permission: str, resource_type: str) -> Reach:
        if resource_type == AUDIT and (permission in "ud" or (permission == "c" and not self.context.is_system)):
            return NOWHERE
        access = self.context.scopes.access(permission, resource_type)
        if not access.allowed:
            return NOWHERE
        paths: list[Path] = []
        for context in CONTEXTS:
            restriction = access.restriction(context)
            if not restriction.allowed:
                continue
            for patients in self._patients(context, permission, resource_type):
                if resource_type != "Patient" and resource_type not in self.linked:
                    patients = ANY_PATIENT  # not patient data: patient limits do not apply
                path = Path(patients, restriction.queries)
                if path.unrestricted:
                    return EVERYWHERE
                paths.append(path)
        return Reach(tuple(dict.fromkeys(paths)))

    def _patients(self, context: Context, permission: str, resource_type: str) -> list[Patients]:
        kind = self.context.kind
        if context == "system":
            return [ANY_PATIENT] if kind == "system" else []
        if kind == "system":
            return []
        if context == "patient":
            pid = self.context.patient
            if pid is None:
                return []
            own = _patient_context(pid, permission, resource_type, self.linked)
            if own is None:
                return []
            if kind == "patient":
                return [own]
            return [own.intersect(p) for p in self._roles(permission, resource_type)]
        # user context
        if kind == "patient":
            pid = self.own_patient
            own = _patient_context(pid, permission, resource_type, self.linked) if pid else None
            return [own] if own is not None else []
        return self._roles(permission, resource_type)

    def _roles(self, permission: str, resource_type: str) -> list[Patients]:
        out: list[Patients] = []
        for role in sorted(self.context.roles):
            for grant in ROLE_POLICIES.get(role, ()):
                types = clinical_types(self.linked) if grant.types == "clinical" else grant.types
                if resource_type not in types or permission not in grant.permissions:
                    continue
                out.append(self._grant_patients(grant))
        return list(dict.fromkeys(out))

    def _grant_patients(self, grant: Grant) -> Patients:
        if grant.patients == "unlinked":
            return Patients(unlinked=True)
        if grant.patients == "care" and not self.break_glass:
            user = relative(self.context.fhir_user)
            refs = (user,) if user.startswith(("Practitioner/", "PractitionerRole/")) else ()
            return Patients(care_of=refs) if refs else Patients(ids=frozenset())
        return ANY_PATIENT


def relative(reference: str | None) -> str:
    """``Type/id`` of a (possibly absolute) FHIR reference; "" for none."""
    if not reference:
        return ""
    parts = reference.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def _patient_context(pid: str, permission: str, resource_type: str, linked: Collection[str]) -> Patients | None:
    """What a patient context reaches of a type (None: nothing)."""
    if resource_type in DIRECTORY:
        return ANY_PATIENT if permission in "rs" else None
    if resource_type in PATIENT_CONTEXT_EXCLUDED:
        return None
    if resource_type == "Patient":
        return Patients(ids=frozenset({pid})) if permission in "rsu" else None
    if resource_type == AUDIT:
        return Patients(ids=frozenset({pid})) if permission in "rs" else None
    if resource_type in linked:
        return Patients(ids=frozenset({pid}))
    return None


def may_break_glass(context: AccessContext) -> bool:
    """Whether the user behind a token may declare a break-glass emergency for themselves (physicians)."""
    return context.kind == "staff" and "physician" in context.roles

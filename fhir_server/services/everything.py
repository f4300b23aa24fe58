"""``Patient/[id]/$everything`` and ``Patient/$everything`` (R4 patient-operation-everything.html).

What is returned, as a searchset Bundle:

* the Patient (``search.mode`` match);
* every resource in its Patient compartment — the official R4 CompartmentDefinition's parameters (an Observation
  whose ``subject`` or ``performer`` is the patient, a Claim whose ``patient`` or ``payee`` is, ...) plus
  ``Device.patient``, which R4 leaves out although a device assigned to a patient is that patient's data (match);
* one level of what the Patient and those resources reference through their reference search parameters
  (``generalPractitioner``, ``managingOrganization``, ``Encounter.serviceProvider``, ``Observation.performer``,
  ``MedicationRequest.medication`` …), when the referenced resource is in no patient compartment: a Practitioner,
  Organization, Location or Medication is included, another patient's Encounter never is (``search.mode``
  include).

Parameters: ``start``/``end`` restrict compartment resources by their care date (the parameter per type is
:data:`CARE_DATES`; resources without one, or without a value, stay), ``_since`` keeps entries last updated at or
after an instant, ``_type`` keeps entries of the listed types, ``_count`` sets the page size; ``next`` links carry
an opaque keyset cursor.  ``total`` is the number of matches (the Patient and its compartment), as in any
searchset.  The type level (``Patient/$everything``) is the same over every patient: all Patients, every resource
in some patient's compartment, and what they reference, each resource once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server import jsonio
from fhir_server.definitions import Definitions
from fhir_server.errors import InvalidRequest, Issue, operation_outcome
from fhir_server.search.dates import parse_period
from fhir_server.search.registry import SearchRegistry
from fhir_server.services._body import parse_resource
from fhir_server.services.history import Paging
from fhir_server.services.resources import ResourceService
from fhir_server.storage._meta import normalise_instant
from fhir_server.storage.base import EverythingRequest, Repository, SearchPage, StoredVersion

COMPARTMENT = "Patient"
OPERATION = "$everything"

# links beyond the R4 Patient CompartmentDefinition
EXTRA_LINKS: Mapping[str, tuple[str, ...]] = {"Device": ("patient",)}

# the date search parameter that says when care happened, per compartment type (start/end); types not listed
# (Patient, Coverage, Group, …) have none and are never left out by start/end
CARE_DATES: Mapping[str, str] = {
    "Account": "period", "AdverseEvent": "date", "AllergyIntolerance": "date", "Appointment": "date",
    "AuditEvent": "date", "Basic": "created", "CarePlan": "date", "CareTeam": "date", "ChargeItem": "occurrence",
    "Claim": "created", "ClaimResponse": "created", "ClinicalImpression": "date", "Communication": "sent",
    "CommunicationRequest": "authored", "Composition": "date", "Condition": "onset-date", "Consent": "date",
    "CoverageEligibilityRequest": "created", "CoverageEligibilityResponse": "created",
    "DetectedIssue": "identified", "DeviceRequest": "authored-on", "DiagnosticReport": "date",
    "DocumentManifest": "created", "DocumentReference": "period", "Encounter": "date", "EpisodeOfCare": "date",
    "ExplanationOfBenefit": "created", "FamilyMemberHistory": "date", "Flag": "date", "Goal": "start-date",
    "ImagingStudy": "started", "Immunization": "date", "ImmunizationEvaluation": "date",
    "ImmunizationRecommendation": "date", "Invoice": "date", "List": "date", "MeasureReport": "period",
    "Media": "created", "MedicationAdministration": "effective-time", "MedicationDispense": "whenhandedover",
    "MedicationRequest": "authoredon", "MedicationStatement": "effective", "NutritionOrder": "datetime",
    "Observation": "date", "Procedure": "date", "Provenance": "recorded", "QuestionnaireResponse": "authored",
    "RequestGroup": "authored", "ResearchSubject": "date", "RiskAssessment": "date", "Schedule": "date",
    "ServiceRequest": "authored", "Specimen": "collected", "SupplyRequest": "date",
    "VisionPrescription": "datewritten",
}

_SINGLE = ("start", "end", "_since", "_count", "_cursor")
_PARAMETER_VALUES = ("valueDate", "valueDateTime", "valueInstant", "valueString", "valueCode", "valueUri",
                     "valueInteger", "valuePositiveInt", "valueUnsignedInt")


@dataclass(frozen=True)
class _Shape:
    links: dict[str, tuple[str, ...]]
    follow: dict[str, tuple[str, ...]]
    care_dates: dict[str, str]


@dataclass
class EverythingParams:
    care_start: float | None = None
    care_end: float | None = None
    since: str | None = None
    types: frozenset[str] | None = None
    count: int = 0
    cursor: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)  # for the self and next links
    warnings: list[Issue] = field(default_factory=list)


class EverythingService:
    def __init__(
        self,
        repo: Repository,
        resources: ResourceService,
        registry: SearchRegistry,
        defs: Definitions,
        paging: Paging,
        total_budget_ms: int | None = 25,
    ) -> None:
        self.repo = repo
        self.resources = resources
        self.registry = registry
        self.defs = defs
        self.paging = paging
        self.total_budget_ms = total_budget_ms
        self._shape_types = sorted({COMPARTMENT, *defs.compartments[COMPARTMENT], *EXTRA_LINKS})
        self._shape: tuple[list[Mapping[str, Any]], _Shape] | None = None

    # -- the compartment, as the repository needs it ------------------------------------------------------

    def shape(self) -> _Shape:
        """Links, followed parameters and care dates, computed again only when a type's parameters change (a
        custom SearchParameter); the same mappings every time let the repository cache what it derives."""
        current = [self.registry.params(t) for t in self._shape_types]
        if self._shape is not None and all(a is b or not (a or b)
                                           for a, b in zip(self._shape[0], current, strict=True)):
            return self._shape[1]
        links = self.links()
        shape = _Shape(links, self.follow(list(links)), self.care_dates())
        self._shape = (current, shape)
        return shape

    def links(self) -> dict[str, tuple[str, ...]]:
        """Member type → the reference parameters that put a resource in a patient's compartment."""
        definition: dict[str, list[str]] = {t: list(p) for t, p in self.defs.compartments[COMPARTMENT].items()}
        for rtype, extra in EXTRA_LINKS.items():
            definition.setdefault(rtype, []).extend(extra)
        out = {}
        for rtype, codes in definition.items():
            known = tuple(c for c in codes if self._is_reference(rtype, c))
            if known:
                out[rtype] = known
        return out

    def _is_reference(self, rtype: str, code: str) -> bool:
        param = self.registry.lookup(rtype, code)
        return param is not None and param.type == "reference"

    def follow(self, member_types: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Source type → every reference parameter, followed one level to the resources referenced."""
        out = {}
        for rtype in {COMPARTMENT, *member_types}:
            codes = tuple(sorted(p.code for p in self.registry.reference_params(rtype)))
            if codes:
                out[rtype] = codes
        return out

    def care_dates(self) -> dict[str, str]:
        return {t: code for t, code in CARE_DATES.items()
                if (p := self.registry.lookup(t, code)) is not None and p.type == "date"}

    # -- parameters -------------------------------------------------------------------------------------------

    def parse(self, params: Sequence[tuple[str, str]], *, strict: bool) -> EverythingParams:
        out = EverythingParams(count=self.paging.max_count)  # a whole record in as few pages as allowed
        seen: set[str] = set()
        types: set[str] = set()
        for name, value in params:
            if name in _SINGLE:
                if name in seen:
                    raise InvalidRequest(f"{name} may appear only once", expression=name)
                seen.add(name)
            match name:
                case "start":
                    out.care_start = _period(value, name)[0]
                    out.applied.append((name, value))
                case "end":
                    out.care_end = _period(value, name)[1]
                    out.applied.append((name, value))
                case "_since":
                    out.since = _since(value)
                    out.applied.append((name, value))
                case "_type":
                    types.update(self._types(value))
                case "_count":
                    if not value.isdigit():
                        raise InvalidRequest("_count must be a non-negative integer", expression="_count")
                    out.count = min(int(value), self.paging.max_count)
                    out.applied.append((name, str(out.count)))
                case "_cursor":
                    out.cursor = value
                case _:
                    message = f"parameter {name!r} is not known to $everything"
                    if strict:
                        raise InvalidRequest(message, expression=name)
                    out.warnings.append(Issue("warning", "not-supported", message + "; it was ignored", (name,)))
        if types:
            out.types = frozenset(types)
            out.applied.append(("_type", ",".join(sorted(types))))
        if out.care_start is not None and out.care_end is not None and out.care_start >= out.care_end:
            raise InvalidRequest("start is after end", expression="start")
        return out

    def _types(self, value: str) -> list[str]:
        names = [v.strip() for v in value.split(",")]
        for name in names:
            if not self.defs.is_resource_type(name):
                raise InvalidRequest(f"_type: {name!r} is not a FHIR R4 resource type", expression="_type")
        return names

    @staticmethod
    def body_params(body: bytes) -> list[tuple[str, str]]:
        """The parameters of a POST: a ``Parameters`` resource (an empty body has none)."""
        if not body.strip():
            return []
        resource = parse_resource(body)
        if resource["resourceType"] != "Parameters":
            raise InvalidRequest("the body of $everything must be a Parameters resource",
                                 expression="resourceType")
        out = []
        for i, param in enumerate(resource.get("parameter") or []):
            where = f"Parameters.parameter[{i}]"
            name = param.get("name") if isinstance(param, dict) else None
            if not isinstance(name, str):
                raise InvalidRequest("a parameter has no name", expression=f"{where}.name")
            values = [param[k] for k in _PARAMETER_VALUES if k in param]
            if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], str | int):
                raise InvalidRequest(f"parameter {name!r} needs one primitive value", expression=where)
            out.append((name, str(values[0])))
        return out

    # -- the operation ----------------------------------------------------------------------------------------

    async def instance(
        self, id: str, params: Sequence[tuple[str, str]], *, base_url: str, strict: bool = False
    ) -> bytes:
        """``Patient/[id]/$everything``: 404 for an unknown patient, 410 for a deleted one."""
        await self.resources.read(COMPARTMENT, id)
        parsed = self.parse(params, strict=strict)
        page = await self.repo.everything(self._request(id, parsed, None))
        return self._bundle(base_url, f"{COMPARTMENT}/{id}/{OPERATION}", parsed, page)

    async def type_level(
        self, params: Sequence[tuple[str, str]], *, base_url: str, strict: bool = False
    ) -> bytes:
        """``Patient/$everything``: every patient's, each resource once; the total within the time budget."""
        parsed = self.parse(params, strict=strict)
        page = await self.repo.everything(self._request(None, parsed, self.total_budget_ms))
        return self._bundle(base_url, f"{COMPARTMENT}/{OPERATION}", parsed, page)

    def _request(self, id: str | None, parsed: EverythingParams, budget: int | None) -> EverythingRequest:
        shape = self.shape()
        return EverythingRequest(
            compartment_type=COMPARTMENT,
            compartment_id=id,
            links=shape.links,
            follow=shape.follow,
            care_dates=shape.care_dates,
            care_start=parsed.care_start,
            care_end=parsed.care_end,
            since=parsed.since,
            types=parsed.types,
            count=parsed.count,
            cursor=parsed.cursor,
            total_budget_ms=budget,
        )

    def _bundle(self, base: str, path: str, parsed: EverythingParams, page: SearchPage) -> bytes:
        def link(relation: str, cursor: str | None = None) -> dict[str, str]:
            qs = urlencode(parsed.applied + ([("_cursor", cursor)] if cursor else []))
            return {"relation": relation, "url": f"{base}/{path}" + (f"?{qs}" if qs else "")}

        links = [link("self")]
        if page.next_cursor:
            links.append(link("next", page.next_cursor))
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if page.total is not None:
            bundle["total"] = page.total
        bundle["link"] = links
        entries = [_entry(base, v, "match") for v in page.matches]
        entries.extend(_entry(base, v, "include") for v in page.included)
        if parsed.warnings:
            entries.append({"resource": operation_outcome(parsed.warnings), "search": {"mode": "outcome"}})
        if entries:
            bundle["entry"] = entries
        return jsonio.dumps(bundle)


def _entry(base: str, version: StoredVersion, mode: str) -> dict[str, Any]:
    assert version.body is not None
    return {
        "fullUrl": f"{base}/{version.resource_type}/{version.id}",
        "resource": orjson.Fragment(version.body),
        "search": {"mode": mode},
    }


def _period(value: str, name: str) -> tuple[float, float]:
    try:
        low, high = parse_period(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}", expression=name) from exc
    return low.timestamp(), high.timestamp()


def _since(value: str) -> str:
    try:
        low, _ = parse_period(value)
    except ValueError as exc:
        raise InvalidRequest(f"_since: {exc}", expression="_since") from exc
    return normalise_instant(low)

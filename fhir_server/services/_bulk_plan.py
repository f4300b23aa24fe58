"""What a Bulk Data export reads: per resource type, the search criteria that select its resources.

* system level: every resource of the type;
* Patient level: the Patient resources and every resource in the Patient compartment of some patient (one of the
  type's compartment parameters, from the R4 CompartmentDefinition, refers to a Patient);
* Group level: the same, restricted to the Patients that are the Group's ``member.entity``.  A small Group is
  read into explicit Patient ids (the searches are then driven by the reference index); a large one is matched
  in the store through the Group's ``member`` index, so its size never matters;
* ``patient`` (Patient and Group levels) restricts to the listed Patients;
* ``_since`` keeps resources last updated after the instant;
* ``_typeFilter``: a resource of a filtered type must match one of the type's filter queries (each parsed by the
  ordinary search parser, so every search parameter, modifier and chain works).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhir_server import jsonio
from fhir_server.definitions import Definitions
from fhir_server.errors import FhirError, InvalidRequest, NotFound
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    Criterion,
    DateValue,
    Has,
    Not,
    ReferenceValue,
    SearchQuery,
    TokenValue,
)
from fhir_server.search.parse import CONTROL, parse_query_string
from fhir_server.services._bulk_params import ExportRequest, Level, patient_id
from fhir_server.services.search import SearchService
from fhir_server.storage.base import Repository

# Groups with more members than this are matched through the store's Group.member index, not by listing ids
GROUP_INLINE_MAX = 500


@dataclass(frozen=True)
class TypePlan:
    resource_type: str
    criteria: tuple[Criterion, ...]

    def query(self) -> SearchQuery:
        return SearchQuery(self.resource_type, self.criteria)


class ExportPlanner:
    def __init__(self, repo: Repository, search: SearchService, defs: Definitions) -> None:
        self.repo = repo
        self.search = search
        self.defs = defs
        compartment = defs.compartments.get("Patient", {})
        self.compartment: dict[str, list[str]] = {
            rtype: [code for code in codes if search.registry.lookup(rtype, code) is not None]
            for rtype, codes in compartment.items()
        }
        self.compartment.setdefault("Patient", [])

    def types_of(self, level: Level) -> frozenset[str]:
        """The types an export of this level can contain."""
        if level == "system":
            return self.defs.resource_types
        return frozenset(t for t, codes in self.compartment.items() if codes or t == "Patient")

    def type_problem(self, level: Level, resource_type: str) -> str | None:
        if not self.defs.is_resource_type(resource_type):
            return "not a FHIR R4 resource type"
        if resource_type not in self.types_of(level):
            return "not in the Patient compartment"
        return None

    async def plan(self, request: ExportRequest, base_url: str) -> list[TypePlan]:
        """The types to read, in name order, with their criteria; raises (naming the parameter) when a filter
        cannot be parsed or the Group does not exist."""
        types = sorted(request.types or self.types_of(request.level))
        filters = {rtype: await self._filters(rtype, queries, base_url)
                   for rtype, queries in request.filters_by_type().items()}
        cohort = await self._cohort(request)
        since = request.since_epoch()
        plans = []
        for rtype in types:
            criteria: list[Criterion] = []
            if request.level != "system":
                criteria.extend(self._in_cohort(rtype, cohort))
            if since is not None:
                criteria.append(Clause("_lastUpdated", "lastUpdated", (DateValue("gt", since, since),)))
            if rtype in filters:
                criteria.extend(filters[rtype])
            plans.append(TypePlan(rtype, tuple(criteria)))
        return plans

    # -- _typeFilter --------------------------------------------------------------------------------------------

    async def _filters(self, rtype: str, queries: Sequence[str], base_url: str) -> tuple[Criterion, ...]:
        """One type's filters as criteria: a resource matches when it matches any of the filter queries."""
        alternatives: list[tuple[Criterion, ...]] = []
        for query in queries:
            params = [(k, v) for k, v in parse_query_string(query) if k not in ("_format", "_pretty")]
            for name, _ in params:
                if name.split(":", 1)[0] in CONTROL:
                    raise InvalidRequest(f"_typeFilter {rtype}?{query}: {name} cannot be used in a filter",
                                         expression="_typeFilter")
            try:
                parsed = self.search.parse(rtype, params, strict=True, base_url=base_url)
                resolved: SearchQuery = await self.search.resolve(parsed.query)  # :in / :not-in value sets
            except FhirError as exc:
                raise InvalidRequest(f"_typeFilter {rtype}?{query}: {exc.diagnostics}",
                                     expression="_typeFilter") from exc
            if not resolved.criteria:
                return ()  # a filter without criteria lets every resource of the type through
            alternatives.append(resolved.criteria)
        if len(alternatives) == 1:
            return alternatives[0]
        return (AnyOf(tuple(_all_of(a) for a in alternatives)),)

    # -- the patients ----------------------------------------------------------------------------------------

    async def _cohort(self, request: ExportRequest) -> list[Criterion | tuple[str, ...]]:
        """The restrictions on the patients: tuples of explicit Patient ids, or a criterion on Patient."""
        out: list[Criterion | tuple[str, ...]] = []
        if request.group_id is not None:
            out.append(await self._group(request.group_id))
        if request.patients:
            out.append(request.patients)
        return out

    async def _group(self, group_id: str) -> Criterion | tuple[str, ...]:
        stored = await self.repo.read("Group", group_id)
        if stored is None or stored.body is None:
            raise NotFound(f"Group/{group_id} is not known" if stored is None else f"Group/{group_id} was deleted")
        group = jsonio.loads(stored.body)
        members = group.get("member") or []
        if len(members) > GROUP_INLINE_MAX:
            return Has("Group", "member", Clause("_id", "id", (TokenValue(None, group_id),)))
        ids = []
        for member in members:
            pid = patient_id(str((member.get("entity") or {}).get("reference", "")))
            if pid is not None:
                ids.append(pid)
        return tuple(dict.fromkeys(ids))

    def _in_cohort(self, rtype: str, cohort: list[Criterion | tuple[str, ...]]) -> list[Criterion]:
        codes = self.compartment.get(rtype, [])
        if not cohort:  # every patient
            if rtype == "Patient":
                return []
            return [AnyOf(tuple(Clause(c, "reference", (ReferenceValue(type="Patient"),)) for c in codes))]
        out: list[Criterion] = []
        for restriction in cohort:
            by_ref: list[Criterion]
            if isinstance(restriction, tuple):
                refs = tuple(ReferenceValue(type="Patient", id=pid) for pid in restriction)
                by_ref = [Clause(c, "reference", refs) for c in codes] if refs else []
                if rtype == "Patient" and restriction:
                    by_ref.append(Clause("_id", "id", tuple(TokenValue(None, pid) for pid in restriction)))
            else:
                by_ref = [Chain(c, ("Patient",), restriction) for c in codes]
                if rtype == "Patient":
                    by_ref.append(restriction)
            out.append(AnyOf(tuple(by_ref)))  # nothing to match by: matches nothing
        return out


def _all_of(criteria: tuple[Criterion, ...]) -> Criterion:
    """AND as one criterion (the query model has AnyOf and Not): a AND b = NOT (NOT a OR NOT b)."""
    if len(criteria) == 1:
        return criteria[0]
    return Not(AnyOf(tuple(Not(c) for c in criteria)))

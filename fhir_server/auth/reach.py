"""A :class:`~fhir_server.auth.policy.Reach` as the store and the in-memory matcher understand it.

* ``criterion(type, reach)`` — one search criterion (of the query model) that a resource of the type matches
  exactly when the reach admits it; ``None`` when the reach is unrestricted.  The scoped repository ANDs it into
  searches, conditional matches, chains and ``_has``, so the store never returns, counts or matches what is out
  of reach.
* ``admits(type, resource, reach, care)`` — the same question about one resource body (any version, including
  old ones that no index holds any more): its patient links are read from the resource, scope queries are
  evaluated by the in-memory matcher.
* ``patients_of(type, resource)`` — the patients a resource belongs to (for the patient limits, and for audit).

Patient links: ``Patient`` by its id; the other types through the reference parameters of the R4 Patient
CompartmentDefinition (plus :data:`~fhir_server.auth.policy.EXTRA_LINKS`).  ``Patient.link`` does not put another
Patient in a patient's reach.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any
from urllib.parse import urlencode

from fhir_server.auth.policy import EXTRA_LINKS, Path, Patients, Reach
from fhir_server.auth.scopes import Query
from fhir_server.definitions import Definitions
from fhir_server.errors import FhirError
from fhir_server.indexing.entries import IndexEntries, ReferenceEntry
from fhir_server.indexing.extract import Indexer, SearchParam, canonicalise
from fhir_server.search.matcher import Candidate, MatcherError, matches
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    Criterion,
    Has,
    Not,
    ReferenceValue,
    SearchQuery,
    TokenValue,
)
from fhir_server.search.parse import parse_criteria
from fhir_server.search.registry import SearchRegistry

#: matches nothing (an OR of no alternatives)
NOTHING: Criterion = AnyOf(())

# (Encounter|CareTeam|EpisodeOfCare, the parameter naming the patient, the parameter naming the carer)
_CARE_LINKS: tuple[tuple[str, str, str], ...] = (
    ("Encounter", "patient", "participant"),
    ("CareTeam", "patient", "participant"),
    ("EpisodeOfCare", "patient", "care-manager"),
)

# checks a list of patient ids against care relationships: the ids (of those) that are under the carers' care
CareCheck = Callable[[frozenset[str], tuple[str, ...]], Awaitable[frozenset[str]]]


def all_of(criteria: Sequence[Criterion]) -> Criterion:
    """AND as one criterion (the query model nests AnyOf and Not): a AND b = NOT (NOT a OR NOT b)."""
    if len(criteria) == 1:
        return criteria[0]
    return Not(AnyOf(tuple(Not(c) for c in criteria)))


def _ref(reference: str) -> ReferenceValue:
    rtype, _, rid = reference.partition("/")
    return ReferenceValue(type=rtype, id=rid)


class ReachCompiler:
    def __init__(self, defs: Definitions, registry: SearchRegistry, indexer: Indexer,
                 base_urls: Sequence[str] = ()) -> None:
        self.registry = registry
        self.indexer = indexer
        self.base_urls = tuple(base_urls)
        links: dict[str, list[str]] = {t: list(codes) for t, codes in defs.compartments.get("Patient", {}).items()
                                       if t != "Patient"}
        for rtype, extra in EXTRA_LINKS.items():
            links.setdefault(rtype, []).extend(extra)
        self._declared = {t: tuple(dict.fromkeys(c)) for t, c in links.items()}
        self._queries: dict[tuple[str, tuple[Query, ...]], tuple[tuple[Criterion, ...], ...]] = {}

    @property
    def linked_types(self) -> frozenset[str]:
        """The types that hold patient data (Patient included)."""
        return frozenset({"Patient", *self._declared})

    def is_linked(self, resource_type: str) -> bool:
        return resource_type == "Patient" or resource_type in self._declared

    def links(self, resource_type: str) -> list[SearchParam]:
        """The reference parameters that link a resource of the type to a patient (those known to the registry)."""
        out = []
        params = self.indexer.params_for(resource_type)
        for code in self._declared.get(resource_type, ()):
            param = params.get(code)
            if param is not None and param.type == "reference":
                out.append(param)
        return out

    # -- criteria -------------------------------------------------------------------------------------------

    def criterion(self, resource_type: str, reach: Reach) -> Criterion | None:
        """The criterion the reach adds to a search of the type (None: none needed)."""
        if reach.unrestricted:
            return None
        alternatives: list[Criterion] = []
        for path in reach.paths:
            parts = [c for c in (self.patient_criterion(resource_type, path.patients),
                                 self.query_criterion(resource_type, path.queries)) if c is not None]
            if not parts:
                return None
            alternatives.append(all_of(parts))
        if not alternatives:
            return NOTHING
        return alternatives[0] if len(alternatives) == 1 else AnyOf(tuple(alternatives))

    def patient_criterion(self, resource_type: str, patients: Patients) -> Criterion | None:
        if not patients.limited or not self.is_linked(resource_type):
            return None
        parts: list[Criterion] = []
        if patients.ids is not None:
            ids = sorted(patients.ids)
            if not ids:
                parts.append(NOTHING)
            elif resource_type == "Patient":
                parts.append(Clause("_id", "id", tuple(TokenValue(None, i) for i in ids)))
            else:
                refs = tuple(ReferenceValue(type="Patient", id=i) for i in ids)
                parts.append(AnyOf(tuple(Clause(p.code, "reference", refs) for p in self.links(resource_type))))
        if patients.care_of is not None:
            if not patients.care_of:
                parts.append(NOTHING)
            else:
                care = self.care_criterion(patients.care_of)
                if resource_type == "Patient":
                    parts.append(care)
                else:
                    links = self.links(resource_type)
                    parts.append(AnyOf(tuple(Chain(p.code, ("Patient",), care) for p in links)))
        if patients.unlinked:
            if resource_type == "Patient":
                parts.append(NOTHING)
            else:
                any_patient = (ReferenceValue(type="Patient"),)
                parts.append(Not(AnyOf(tuple(Clause(p.code, "reference", any_patient)
                                             for p in self.links(resource_type)))))
        return all_of(parts)

    def care_criterion(self, carers: tuple[str, ...]) -> Criterion:
        """Patients in a care relationship with any of ``carers`` (Practitioner/PractitionerRole references)."""
        refs = tuple(_ref(r) for r in carers)
        options: list[Criterion] = [Clause("general-practitioner", "reference", refs)]
        for source, patient_param, carer_param in _CARE_LINKS:
            if self.registry.lookup(source, carer_param) is not None:
                options.append(Has(source, patient_param, Clause(carer_param, "reference", refs)))
        return AnyOf(tuple(options))

    def query_criterion(self, resource_type: str, queries: tuple[Query, ...]) -> Criterion | None:
        if not queries:
            return None
        alternatives = self.parsed_queries(resource_type, queries)
        if not alternatives:
            return NOTHING
        return AnyOf(tuple(all_of(a) for a in alternatives))

    def parsed_queries(self, resource_type: str, queries: tuple[Query, ...]) -> tuple[tuple[Criterion, ...], ...]:
        """Each scope query as criteria; a query this server cannot parse for the type matches nothing."""
        key = (resource_type, queries)
        cached = self._queries.get(key)
        if cached is None:
            out = []
            for query in queries:
                try:
                    parsed = parse_criteria(resource_type, urlencode(query), self.registry, self.base_urls,
                                            canonicalise)
                except FhirError:
                    continue
                out.append(parsed.criteria)
            cached = self._queries[key] = tuple(out)
        return cached

    # -- one resource ------------------------------------------------------------------------------------------

    def patients_of(self, resource_type: str, resource: dict[str, Any]) -> frozenset[str]:
        """The patients the resource belongs to (its own id for a Patient)."""
        if resource_type == "Patient":
            rid = resource.get("id")
            return frozenset({rid}) if isinstance(rid, str) else frozenset()
        out: set[str] = set()
        for param in self.links(resource_type):
            for entry in self.indexer.extract_param(resource, param):
                if isinstance(entry, ReferenceEntry) and entry.type == "Patient" and entry.id:
                    out.add(entry.id)
        return frozenset(out)

    async def admits(self, resource_type: str, resource: dict[str, Any], reach: Reach, care: CareCheck,
                     current: Callable[[Sequence[Criterion]], Awaitable[bool]] | None = None) -> bool:
        """Whether the reach admits this resource body.  ``current``, when given, answers criteria the matcher
        cannot evaluate alone (chains in a scope query) against the stored current version."""
        if reach.unrestricted:
            return True
        patients: frozenset[str] | None = None
        entries: IndexEntries | None = None
        for path in reach.paths:
            if self.is_linked(resource_type) and path.patients.limited:
                if patients is None:
                    patients = self.patients_of(resource_type, resource)
                if not await self._patients_ok(patients, path.patients, care):
                    continue
            if not path.queries:
                return True
            if entries is None:
                entries = self.indexer.extract(resource)
            if await self._queries_ok(resource_type, resource, entries, path, current):
                return True
        return False

    @staticmethod
    async def _patients_ok(patients: frozenset[str], limit: Patients, care: CareCheck) -> bool:
        if limit.unlinked and patients:
            return False
        if limit.ids is not None and not patients & limit.ids:
            return False
        if limit.care_of is not None:
            return bool(patients and limit.care_of and await care(patients, limit.care_of))
        return True

    async def _queries_ok(self, resource_type: str, resource: dict[str, Any], entries: IndexEntries, path: Path,
                          current: Callable[[Sequence[Criterion]], Awaitable[bool]] | None) -> bool:
        candidate = Candidate(resource_type, str(resource.get("id", "")), _last_updated(resource), entries)
        for criteria in self.parsed_queries(resource_type, path.queries):
            try:
                if matches(criteria, candidate):
                    return True
            except MatcherError:
                if current is not None and await current(criteria):
                    return True
        return False

    def care_query(self, ids: Collection[str], carers: tuple[str, ...]) -> SearchQuery:
        """Patients among ``ids`` in a care relationship with ``carers``."""
        return SearchQuery("Patient", (Clause("_id", "id", tuple(TokenValue(None, i) for i in sorted(ids))),
                                       self.care_criterion(carers)))


def _last_updated(resource: dict[str, Any]) -> float:
    value = (resource.get("meta") or {}).get("lastUpdated")
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0

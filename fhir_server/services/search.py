"""The search interactions (type, system, compartment) and the searchset Bundle (R4 search.html).

Parsing turns the query string into the model; this service resolves what needs the store or the registry
(``:in``/``:not-in`` value sets, ``*`` includes, compartments), asks the repository for one page, and builds the
Bundle: ``self`` link with the applied parameters, ``next``/``previous`` links with an opaque cursor, entries with
``search.mode`` match/include/outcome, ``total`` unless ``_total=none``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server import jsonio
from fhir_server.definitions import Definitions
from fhir_server.errors import InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.indexing.extract import canonicalise
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    Criterion,
    Has,
    Include,
    Not,
    ReferenceValue,
    SearchQuery,
    TokenValue,
    UriValue,
)
from fhir_server.search.parse import Parsed, parse_search
from fhir_server.search.registry import SearchRegistry
from fhir_server.services import subsetting
from fhir_server.services.history import Paging
from fhir_server.storage.base import IncludeSpec, Repository, SearchPage, SearchRequest, StoredVersion


class SearchService:
    def __init__(
        self, repo: Repository, registry: SearchRegistry, defs: Definitions, paging: Paging,
        total_budget_ms: int | None = 25,
    ) -> None:
        self.total_budget_ms = total_budget_ms
        self.repo = repo
        self.registry = registry
        self.defs = defs
        self.paging = paging

    def parse(
        self, resource_type: str | None, params: Sequence[tuple[str, str]], *, strict: bool, base_url: str
    ) -> Parsed:
        return parse_search(resource_type, params, self.registry, strict=strict,
                            max_count=self.paging.max_count, base_urls=(base_url,), canonicalise=canonicalise)

    async def search(
        self,
        resource_type: str | None,
        params: Sequence[tuple[str, str]],
        *,
        base_url: str,
        strict: bool = False,
        compartment: tuple[str, str] | None = None,
    ) -> bytes:
        cursor = None
        rest = []
        for name, value in params:
            if name == "_cursor":
                cursor = value
            else:
                rest.append((name, value))
        parsed = self.parse(resource_type, rest, strict=strict, base_url=base_url)
        query = await self.resolve(parsed.query)
        if compartment is not None:
            assert resource_type is not None
            query = replace(query, criteria=(self._compartment(compartment, resource_type), *query.criteria))
        path = resource_type or ""
        if compartment is not None:
            path = f"{compartment[0]}/{compartment[1]}/{resource_type}"
        if query.summary == "count":
            total = await self.repo.count_matches(query)
            return self._bundle(base_url, path, query, parsed.warnings, None, total, [], [])
        count = self.paging.default_count if query.count is None else query.count
        budget = None if query.total == "accurate" else self.total_budget_ms
        request = SearchRequest(query, count, cursor, total=query.total != "none", total_budget_ms=budget,
                                includes=self._includes(query))
        page = await self.repo.search(request)
        return self._bundle(base_url, path, query, parsed.warnings, page, page.total, page.matches, page.included)

    # -- resolution -------------------------------------------------------------------------------------------

    def _compartment(self, compartment: tuple[str, str], resource_type: str) -> Criterion:
        ctype, cid = compartment
        if ctype not in self.defs.compartments:
            raise NotFound(f"{ctype} is not a compartment")
        params = self.defs.compartments[ctype].get(resource_type)
        if not params:
            raise NotFound(f"{resource_type} is not in the {ctype} compartment")
        value = ReferenceValue(type=ctype, id=cid)
        criteria: list[Criterion] = []
        for code in params:
            if code == "{def}":
                criteria.append(Clause("_id", "id", (TokenValue(None, cid),)))
            elif self.registry.lookup(resource_type, code) is not None:
                criteria.append(Clause(code, "reference", (value,)))
        return AnyOf(tuple(criteria))

    async def resolve(self, query: SearchQuery) -> SearchQuery:
        """Expand ``:in``/``:not-in`` against stored ValueSets."""
        criteria = [await self._resolve_criterion(c) for c in query.criteria]
        return replace(query, criteria=tuple(criteria))

    async def _resolve_criterion(self, c: Criterion) -> Criterion:
        match c:
            case Clause(type="token", modifier="in" | "not-in"):
                codes: list[TokenValue] = []
                for value in c.values:
                    assert isinstance(value, UriValue)
                    codes.extend(await self._expand(value.uri, c.param))
                positive = Clause(c.param, "token", tuple(codes) or (TokenValue(None, None),))
                return Not(positive) if c.modifier == "not-in" else positive
            case Not():
                return Not(await self._resolve_criterion(c.inner))
            case Chain():
                return replace(c, inner=await self._resolve_criterion(c.inner))
            case Has():
                return replace(c, inner=await self._resolve_criterion(c.inner))
            case AnyOf():
                return AnyOf(tuple([await self._resolve_criterion(i) for i in c.criteria]))
        return c

    async def _expand(self, url: str, param: str) -> list[TokenValue]:
        query = SearchQuery("ValueSet", (Clause("url", "uri", (UriValue(url),)),))
        page = await self.repo.search(SearchRequest(query, 1, total=False))
        if page.matches and page.matches[0].body is not None:
            return _valueset_codes(jsonio.loads(page.matches[0].body))
        builtin = self.defs.valueset(url)
        if builtin is not None and builtin.checkable:
            return [TokenValue(system, code) for system, codes in sorted(builtin.systems.items())
                    for code in sorted(codes)]
        raise InvalidRequest(f"value set {url!r} is not known to this server", expression=f"{param}:in")

    def _includes(self, query: SearchQuery) -> tuple[IncludeSpec, ...]:
        specs = []
        types = (query.resource_type,) if query.resource_type else query.types
        for inc in query.includes:
            specs.extend(self._include_specs(inc, types))
        return tuple(specs)

    def _include_specs(self, inc: Include, types: Sequence[str | None]) -> list[IncludeSpec]:
        sources = [t for t in types if t] if inc.source_type == "*" else [inc.source_type]
        out = []
        for source in sources:
            if inc.param == "*":
                codes = tuple(sorted(p.code for p in self.registry.reference_params(source)))
            else:
                codes = (inc.param,)
            out.append(IncludeSpec(source, codes, inc.target_type, inc.reverse, inc.iterate))
        return out

    # -- bundle -------------------------------------------------------------------------------------------------

    def _bundle(
        self,
        base: str,
        path: str,
        query: SearchQuery,
        warnings: list[Issue],
        page: SearchPage | None,
        total: int | None,
        matches: list[StoredVersion],
        included: list[StoredVersion],
    ) -> bytes:
        def link(relation: str, cursor: str | None = None) -> dict[str, str]:
            params = list(query.applied) + ([("_cursor", cursor)] if cursor else [])
            qs = urlencode(params)
            return {"relation": relation, "url": f"{base}/{path}" + (f"?{qs}" if qs else "")}

        links = [link("self")]
        if page is not None:
            if page.next_cursor:
                links.append(link("next", page.next_cursor))
            if page.previous_cursor:
                links.append(link("previous", page.previous_cursor))
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total is not None:
            bundle["total"] = total
        bundle["link"] = links
        entries = [self._entry(base, v, "match", query) for v in matches]
        entries.extend(self._entry(base, v, "include", query) for v in included)
        if warnings:
            entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
        if entries:
            bundle["entry"] = entries
        return jsonio.dumps(bundle)

    def _entry(self, base: str, version: StoredVersion, mode: str, query: SearchQuery) -> dict[str, Any]:
        assert version.body is not None
        resource: Any = orjson.Fragment(version.body)
        if query.summary in ("true", "text", "data") or query.elements:
            data = jsonio.loads(version.body)
            if query.summary in ("true", "text", "data"):
                data = subsetting.summary(data, query.summary, self.defs)
            if query.elements:
                data = subsetting.elements(data, ",".join(query.elements), self.defs)
            resource = data
        return {
            "fullUrl": f"{base}/{version.resource_type}/{version.id}",
            "resource": resource,
            "search": {"mode": mode},
        }


def _valueset_codes(valueset: Mapping[str, Any]) -> list[TokenValue]:
    """Codes of a stored ValueSet: its expansion if it has one, else the concepts listed in compose.include."""
    out: list[TokenValue] = []

    def walk(contains: list[Mapping[str, Any]]) -> None:
        for item in contains:
            if item.get("code"):
                out.append(TokenValue(item.get("system"), item["code"]))
            walk(item.get("contains", []))

    expansion = valueset.get("expansion")
    if isinstance(expansion, Mapping):
        walk(expansion.get("contains", []))
    else:
        for include in (valueset.get("compose") or {}).get("include", []):
            for concept in include.get("concept", []):
                out.append(TokenValue(include.get("system"), concept.get("code")))
    return out

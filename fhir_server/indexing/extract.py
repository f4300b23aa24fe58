"""Index extraction: every R4 search parameter (and any SearchParameter created at run time) turned into typed,
normalised entries (:mod:`fhir_server.indexing.entries`) at write time.

Usage::

    indexer = Indexer.from_definitions(load_definitions(), base_urls=["https://hospital.example/fhir"])
    entries = indexer.extract(patient)          # IndexEntries for every parameter of Patient
    indexer.add(search_param_from_resource(sp)) # a run-time SearchParameter takes effect at once

Each expression is compiled once per resource type it applies to (:mod:`~fhir_server.indexing._compile`) into
plain dictionary navigation with static types; the expressions it cannot handle are evaluated by fhirpathpy,
parsed once (:meth:`Indexer.fallbacks` lists them — none of the 1,375 R4 core parameters need it).  A resource
runs only the parameters whose top-level elements it has (:mod:`~fhir_server.indexing._dispatch`).

How values become entries is documented where it is done: strings in ``_norm_string``, tokens in
``_norm_token``, dates in ``_norm_date``, numbers and quantities in ``_norm_number`` (UCUM table in ``_ucum``),
references in ``_refs``, composites in ``_plan``.  The query side must normalise search values the same way:
:func:`normalise_string` and :func:`canonicalise` are exported for it.

What is not extracted here, although :meth:`Indexer.params_for` lists it:

* ``_id`` and ``_lastUpdated``: the store answers them from the resource row (id, ``meta.lastUpdated``);
* parameters without an expression — ``_text``, ``_content`` (full-text search) and ``_query`` (named queries);
* ``special`` parameters — ``Location.near`` (geographic search over ``Location.position``, handled by search).

A parameter whose ``base`` is ``Resource`` applies to every resource type, ``DomainResource`` to every type
but Bundle, Binary and Parameters.  A parameter added for a type replaces the one with the same code there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.definitions import Definitions, load_definitions
from fhir_server.indexing._dispatch import Dispatch
from fhir_server.indexing._fallback import check_syntax
from fhir_server.indexing._norm_string import normalise_string
from fhir_server.indexing._normalise import Normalisers
from fhir_server.indexing._plan import CompiledParam, Environment, compile_param
from fhir_server.indexing._refs import References
from fhir_server.indexing._types import TypeSystem
from fhir_server.indexing._ucum import canonicalise
from fhir_server.indexing.entries import CompositeEntry, Entry, IndexEntries

__all__ = [
    "STORE_PARAMS",
    "Indexer",
    "SearchParam",
    "canonicalise",
    "normalise_string",
    "search_param_from_resource",
]

STORE_PARAMS = frozenset({"_id", "_lastUpdated"})  # answered by the store from the resource row


@dataclass(frozen=True, slots=True)
class SearchParam:
    """A search parameter definition: the R4 core ones and SearchParameter resources created at run time."""

    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    base: tuple[str, ...]
    expression: str | None
    url: str
    name: str = ""
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (definition url, expression relative to the element)
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None

    @property
    def indexed(self) -> bool:
        """True when :class:`Indexer` extracts entries for it (see the module docstring for the others)."""
        return bool(self.expression) and self.type != "special" and self.code not in STORE_PARAMS


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def search_param_from_resource(sp: Mapping[str, Any]) -> SearchParam:
    """A :class:`SearchParam` from a SearchParameter resource (or a definitions entry, which has its shape)."""
    components = tuple(
        (str(c.get("definition", "")), str(c.get("expression", "")))
        for c in sp.get("component") or ()
        if isinstance(c, dict)
    )
    expression = sp.get("expression")
    return SearchParam(
        code=str(sp.get("code", "")),
        type=str(sp.get("type", "")),
        base=_strings(sp.get("base")),
        expression=expression if isinstance(expression, str) and expression.strip() else None,
        url=str(sp.get("url", "")),
        name=str(sp.get("name", "")),
        targets=_strings(sp.get("target")),
        components=components,
        modifiers=_strings(sp.get("modifier")),
        comparators=_strings(sp.get("comparator")),
        chains=_strings(sp.get("chain")),
        multiple_or=_flag(sp.get("multipleOr")),
        multiple_and=_flag(sp.get("multipleAnd")),
    )


class Indexer:
    """Extracts index entries for every applicable search parameter of a resource."""

    def __init__(
        self,
        params: Iterable[SearchParam],
        *,
        base_urls: Sequence[str] = (),
        definitions: Definitions | None = None,
    ) -> None:
        defs = definitions or load_definitions()
        self._resource_types = sorted(defs.resource_types)
        self._domain_types = frozenset(
            t for t in self._resource_types if defs.types[t].base == "DomainResource"
        )
        refs = References(defs.resource_types, base_urls)
        self._env = Environment(TypeSystem(defs), refs, Normalisers(refs), self.by_url)
        self._declared: dict[str, dict[str, SearchParam]] = {}  # base type -> code -> param
        self._by_url: dict[str, SearchParam] = {}
        self._applicable: dict[str, dict[str, SearchParam]] = {}
        self._plans: dict[str, dict[str, CompiledParam]] = {}
        self._dispatch: dict[str, Dispatch] = {}
        self._sources: dict[str, dict[str, SearchParam]] = {}  # what each plan was compiled from
        self._adhoc: dict[tuple[str, SearchParam], CompiledParam | None] = {}
        self.generation = 0  # counts the changes of the registered parameters (what parsed criteria depend on)
        for param in params:
            self._register(param)
        for resource_type in self._resource_types:
            self._build(resource_type)

    @classmethod
    def from_definitions(cls, defs: Definitions, base_urls: Sequence[str] = ()) -> Indexer:
        """An indexer for all R4 core search parameters."""
        params = [search_param_from_resource(sp) for sp in defs.search_parameters]
        return cls(params, base_urls=base_urls, definitions=defs)

    # ------------------------------------------------------------------------------------------- registry
    def params_for(self, resource_type: str) -> Mapping[str, SearchParam]:
        """Every parameter applicable to ``resource_type`` by code, Resource/DomainResource ones included."""
        return self._applicable.get(resource_type, {})

    def by_url(self, url: str) -> SearchParam | None:
        """A registered parameter by canonical URL (``|version`` ignored)."""
        return self._by_url.get(url.split("|", 1)[0])

    @staticmethod
    def check(param: SearchParam) -> None:
        """Raise ValueError (naming the problem) when an expression of ``param`` is not valid FHIRPath.  Valid
        expressions always compile: what the fast compiler does not handle is evaluated by fhirpathpy."""
        if param.indexed:
            for expression in (param.expression, *(e for _url, e in param.components)):
                check_syntax(expression or "")

    def add(self, param: SearchParam) -> None:
        """Register (or replace) a parameter; it applies to resources extracted from now on.  Raises
        ValueError (and changes nothing) when an expression is not valid FHIRPath (see :meth:`check`)."""
        self.check(param)
        self._register(param)
        for resource_type in self.types_of(param):
            self._build(resource_type)
        self.generation += 1

    def types_of(self, param: SearchParam) -> list[str]:
        """The concrete resource types ``param`` applies to (every type for a ``Resource`` base, every
        DomainResource for a ``DomainResource`` base)."""
        if "Resource" in param.base:
            return list(self._resource_types)
        if "DomainResource" in param.base:
            return sorted(self._domain_types | {b for b in param.base if b in self._resource_types})
        return [b for b in param.base if b in self._resource_types]

    def fallbacks(self) -> list[tuple[str, str]]:
        """``(resource type, code)`` of every compiled parameter evaluated by fhirpathpy."""
        return [(rt, code) for rt, plan in self._plans.items() for code, c in plan.items() if c.fallback]

    @property
    def notes(self) -> list[str]:
        """Compile-time remarks: unknown elements, selected values whose type the parameter cannot index."""
        return self._env.notes

    @property
    def references(self) -> References:
        """The reference reader (base URLs, ``resolve()`` typing) this indexer uses."""
        return self._env.refs

    def compiled(self, resource_type: str) -> Mapping[str, CompiledParam]:
        """The compiled parameters of a type (introspection for tests and tools)."""
        return self._plans.get(resource_type, {})

    # ------------------------------------------------------------------------------------------ extraction
    def extract(self, resource: dict[str, Any]) -> IndexEntries:
        """All entries of ``resource`` for every indexed parameter of its type (empty for an unknown type)."""
        entries = IndexEntries()
        dispatch = self._dispatch.get(resource.get("resourceType"))  # type: ignore[arg-type]
        if dispatch is not None:
            slots = (entries.strings, entries.tokens, entries.dates, entries.numbers, entries.quantities,
                     entries.references, entries.uris, entries.composites)  # fmt: skip
            dispatch.run(resource, slots)
        return entries

    def plan(self, resource_type: str) -> Mapping[str, CompiledParam]:
        """The compiled parameters of a type (a new mapping whenever its parameters change; do not modify)."""
        return self._plans.get(resource_type, {})

    def extract_param(self, resource: dict[str, Any], param: SearchParam) -> list[Entry | CompositeEntry]:
        """The entries of one parameter (registered or not) for ``resource``."""
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in self._plans or not param.indexed:
            return []
        compiled = self._plans[resource_type].get(param.code)
        if compiled is None or self._sources[resource_type].get(param.code) != param:
            key = (resource_type, param)
            if key not in self._adhoc:
                self._adhoc[key] = compile_param(param, resource_type, self._env)
            compiled = self._adhoc[key]
        out: list[Entry | CompositeEntry] = []
        if compiled is not None:
            compiled.extract(resource, out)
        return out

    # ---------------------------------------------------------------------------------------------- private
    def _register(self, param: SearchParam) -> None:
        for base in param.base:
            self._declared.setdefault(base, {})[param.code] = param
        if param.url:
            self._by_url[param.url] = param

    def _build(self, resource_type: str) -> None:
        applicable: dict[str, SearchParam] = dict(self._declared.get("Resource", {}))
        if resource_type in self._domain_types:
            applicable.update(self._declared.get("DomainResource", {}))
        applicable.update(self._declared.get(resource_type, {}))
        self._applicable[resource_type] = applicable
        previous, sources = self._plans.get(resource_type, {}), self._sources.get(resource_type, {})
        plan: dict[str, CompiledParam] = {}
        for code, param in applicable.items():
            if not param.indexed:
                continue
            compiled = previous.get(code) if sources.get(code) is param else None
            compiled = compiled or compile_param(param, resource_type, self._env)
            if compiled is not None:
                plan[code] = compiled
        self._plans[resource_type] = plan
        self._sources[resource_type] = applicable
        self._dispatch[resource_type] = Dispatch.of(plan.values())

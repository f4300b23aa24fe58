"""Index entries for many resources that share most of their content, with the shared part's entries cached.

The AuditEvents of one client's requests differ only in when (``recorded``) and what (``entity``): the rest —
type, subtype, action, outcome, agents, source — repeats.  A parameter whose paths all start at elements that do
not vary (a *plain* compiled parameter with known first keys, :attr:`CompiledParam.first_keys`) selects the same
values from every such resource, so its entries are computed once per distinct shared part and reused; the others
run on each resource.  The result equals :meth:`Indexer.extract` (tests/indexing/test_shared_parts.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fhir_server import jsonio
from fhir_server.indexing._plan import CompiledParam, Memo
from fhir_server.indexing.entries import IndexEntries
from fhir_server.indexing.extract import Indexer
from fhir_server.storage.base import NewResource, SharedIndex


class SharedPartIndexer:
    def __init__(self, indexer: Indexer, resource_type: str, varying: frozenset[str], cache_size: int = 1024):
        self.indexer = indexer
        self.resource_type = resource_type
        self.varying = varying | {"id", "meta"}
        self.cache_size = cache_size
        self._plan: object = None
        self._fixed: tuple[CompiledParam, ...] = ()
        self._rest: tuple[tuple[CompiledParam, frozenset[str] | None], ...] = ()  # with their first keys
        self._cache: OrderedDict[bytes, SharedIndex] = OrderedDict()

    def _split(self) -> None:
        """Which parameters read only the shared part (again whenever the type's parameters change)."""
        plan = self.indexer.plan(self.resource_type)
        if plan is self._plan:
            return
        fixed: list[CompiledParam] = []
        rest: list[tuple[CompiledParam, frozenset[str] | None]] = []
        for compiled in plan.values():
            keys = compiled.first_keys
            if compiled.plain and keys and not keys & self.varying:
                fixed.append(compiled)
            else:
                rest.append((compiled, keys))
        self._plan, self._fixed, self._rest = plan, tuple(fixed), tuple(rest)
        self._cache.clear()

    def extract(self, resource: dict[str, Any]) -> IndexEntries:
        """Every entry of ``resource`` (equal to :meth:`Indexer.extract`)."""
        if resource.get("resourceType") != self.resource_type:
            return self.indexer.extract(resource)
        shared, own = self.split(resource)
        return NewResource("", resource, own, shared).entries()

    def split(self, resource: dict[str, Any]) -> tuple[SharedIndex, IndexEntries]:
        """The entries of the shared part (the same object for every resource with that shared part, while it is
        cached) and those of the rest; together they are :meth:`Indexer.extract`'s entries."""
        if resource.get("resourceType") != self.resource_type:
            return _NOTHING, self.indexer.extract(resource)
        self._split()
        key = jsonio.dumps({k: v for k, v in resource.items() if k not in self.varying})
        shared = self._cache.get(key)
        if shared is None:
            memo: Memo = {}
            common = IndexEntries()
            for compiled in self._fixed:
                compiled.extract(resource, _slots(common)[compiled.slot], memo)
            shared = self._cache[key] = SharedIndex(key, common)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        own = IndexEntries()
        slots = _slots(own)
        memo = {}
        for compiled, keys in self._rest:
            if not keys or not keys.isdisjoint(resource):  # without any of its first keys it selects nothing
                compiled.extract(resource, slots[compiled.slot], memo)
        return shared, own


_NOTHING = SharedIndex(b"", IndexEntries())


def _slots(entries: IndexEntries) -> tuple[list[Any], ...]:
    return (entries.strings, entries.tokens, entries.dates, entries.numbers, entries.quantities, entries.references,
            entries.uris, entries.composites)

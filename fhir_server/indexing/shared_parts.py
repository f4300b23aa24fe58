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

_Parts = tuple[tuple[Any, ...], ...]


class SharedPartIndexer:
    def __init__(self, indexer: Indexer, resource_type: str, varying: frozenset[str], cache_size: int = 1024):
        self.indexer = indexer
        self.resource_type = resource_type
        self.varying = varying | {"id", "meta"}
        self.cache_size = cache_size
        self._plan: object = None
        self._fixed: tuple[CompiledParam, ...] = ()
        self._rest: tuple[CompiledParam, ...] = ()
        self._cache: OrderedDict[bytes, _Parts] = OrderedDict()

    def _split(self) -> None:
        """Which parameters read only the shared part (again whenever the type's parameters change)."""
        plan = self.indexer.plan(self.resource_type)
        if plan is self._plan:
            return
        fixed: list[CompiledParam] = []
        rest: list[CompiledParam] = []
        for compiled in plan.values():
            keys = compiled.first_keys
            (fixed if compiled.plain and keys and not keys & self.varying else rest).append(compiled)
        self._plan, self._fixed, self._rest = plan, tuple(fixed), tuple(rest)
        self._cache.clear()

    def extract(self, resource: dict[str, Any]) -> IndexEntries:
        if resource.get("resourceType") != self.resource_type:
            return self.indexer.extract(resource)
        self._split()
        entries = IndexEntries()
        slots: tuple[list[Any], ...] = (entries.strings, entries.tokens, entries.dates, entries.numbers,
                                        entries.quantities, entries.references, entries.uris, entries.composites)
        key = jsonio.dumps({k: v for k, v in resource.items() if k not in self.varying})
        shared = self._cache.get(key)
        if shared is None:
            memo: Memo = {}
            scratch: tuple[list[Any], ...] = tuple([] for _ in slots)
            for compiled in self._fixed:
                compiled.extract(resource, scratch[compiled.slot], memo)
            shared = tuple(tuple(s) for s in scratch)
            self._cache[key] = shared
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for slot, found in zip(slots, shared, strict=True):
            slot.extend(found)
        memo = {}
        for compiled in self._rest:
            compiled.extract(resource, slots[compiled.slot], memo)
        return entries

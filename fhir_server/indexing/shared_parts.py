"""Index entries for many resources that share most of their content, with the shared part's entries cached.

The AuditEvents of one client's requests differ only in when (``recorded``) and what (``entity``): the rest —
type, subtype, action, outcome, agents, source — repeats.  A parameter whose paths all start at elements that do
not vary (a *plain* compiled parameter with known first keys, :attr:`CompiledParam.first_keys`) selects the same
values from every such resource, so its entries are computed once per distinct shared part and reused; the others
run on each resource.  The result equals :meth:`Indexer.extract` (tests/indexing/test_shared_parts.py).

Of the others, the *local* ones (:attr:`CompiledParam.local`: what they select depends only on the elements at
their first keys, and on ``contained`` through ``resolve()``) are grouped by those keys, and a group's entries are
cached by the JSON of its elements: the AuditEvents of reads of one patient's record have the same ``entity``.
A miss costs the JSON of the elements (~1 µs for ``recorded``, which never repeats) against the extraction a hit
saves (~30 µs for ``entity`` and ``patient``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fhir_server import jsonio
from fhir_server.indexing._plan import CompiledParam, Memo
from fhir_server.indexing.entries import IndexEntries
from fhir_server.indexing.extract import Indexer
from fhir_server.storage.base import NewResource, SharedIndex


class _Group:
    """Local parameters with the same first keys, and their entries by the JSON of those elements."""

    __slots__ = ("cache", "keys", "params")

    def __init__(self, keys: frozenset[str], params: list[CompiledParam]) -> None:
        self.keys = tuple(sorted(keys))
        self.params = tuple(params)
        self.cache: OrderedDict[bytes, tuple[tuple[int, list[Any]], ...]] = OrderedDict()


class SharedPartIndexer:
    def __init__(self, indexer: Indexer, resource_type: str, varying: frozenset[str], cache_size: int = 1024,
                 group_cache_size: int = 4096):
        self.indexer = indexer
        self.resource_type = resource_type
        self.varying = varying | {"id", "meta"}
        self.cache_size = cache_size
        self.group_cache_size = group_cache_size
        self._plan: object = None
        self._fixed: tuple[CompiledParam, ...] = ()
        self._rest: tuple[tuple[CompiledParam, frozenset[str] | None], ...] = ()  # with their first keys
        self._groups: tuple[_Group, ...] = ()
        self._cache: OrderedDict[bytes, SharedIndex] = OrderedDict()

    def _split(self) -> None:
        """Which parameters read only the shared part (again whenever the type's parameters change)."""
        plan = self.indexer.plan(self.resource_type)
        if plan is self._plan:
            return
        fixed: list[CompiledParam] = []
        rest: list[tuple[CompiledParam, frozenset[str] | None]] = []
        groups: dict[frozenset[str], list[CompiledParam]] = {}
        for compiled in plan.values():
            keys = compiled.first_keys
            if compiled.local and keys and not keys & self.varying:
                fixed.append(compiled)
            elif compiled.local and keys and not keys & {"id", "meta"}:
                groups.setdefault(keys, []).append(compiled)
            else:
                rest.append((compiled, keys))
        self._plan, self._fixed, self._rest = plan, tuple(fixed), tuple(rest)
        self._groups = tuple(_Group(keys, params) for keys, params in groups.items())
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
        for group in self._groups:
            self._extract_group(group, resource, slots)
        return shared, own

    def _extract_group(self, group: _Group, resource: dict[str, Any], slots: tuple[list[Any], ...]) -> None:
        get = resource.get
        values = [get(k) for k in group.keys]
        if values.count(None) == len(values):
            return  # without any of its first keys a parameter selects nothing
        key = jsonio.dumps([values, resource.get("contained")])
        found = group.cache.get(key)
        if found is None:
            memo: Memo = {}
            made = []
            for compiled in group.params:
                entries: list[Any] = []
                compiled.extract(resource, entries, memo)
                made.append((compiled.slot, entries))
            found = group.cache[key] = tuple(made)
            if len(group.cache) > self.group_cache_size:
                group.cache.popitem(last=False)
        for slot, entries in found:
            slots[slot].extend(entries)


_NOTHING = SharedIndex(b"", IndexEntries())


def _slots(entries: IndexEntries) -> tuple[list[Any], ...]:
    return (entries.strings, entries.tokens, entries.dates, entries.numbers, entries.quantities, entries.references,
            entries.uris, entries.composites)

"""Running only the parameters a resource can match: most parameters of a type read one top-level element that
most resources do not have, so the compiled parameters of a type are grouped by the top-level JSON properties
their paths start with, and a resource runs those whose properties it has (plus the few whose start is not
known statically).  A composite on the resource itself (``Observation.code-value-quantity``) runs only when the
resource has a property of every component (``code`` and ``valueQuantity``).  Every parameter still runs at
most once per resource.

One memo per resource lets composite components reuse the entries of the plain parameter with the same code for
the same value (``code-value-quantity`` reuses ``code`` and ``value-quantity``), since entries are immutable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.indexing._plan import CompiledParam, Memo

__all__ = ["Dispatch"]


@dataclass(frozen=True, slots=True)
class Dispatch:
    by_key: dict[str, tuple[CompiledParam, ...]]  # parameters that can only start at this one property
    multi: tuple[tuple[CompiledParam, tuple[str, ...]], ...]  # parameters starting at any of several
    always: tuple[CompiledParam, ...]  # start unknown: run for every resource
    # composites on the resource itself: run when, for some branch, every component has one of its properties
    gated: tuple[tuple[CompiledParam, tuple[tuple[frozenset[str], ...], ...]], ...] = ()

    @classmethod
    def of(cls, params: Iterable[CompiledParam]) -> Dispatch:
        params = list(params)
        component_codes = {c.code for p in params for components in p.components for c in components}
        by_key: dict[str, list[CompiledParam]] = {}
        multi: list[tuple[CompiledParam, tuple[str, ...]]] = []
        always: list[CompiledParam] = []
        gated: list[tuple[CompiledParam, tuple[tuple[frozenset[str], ...], ...]]] = []
        for compiled in params:
            compiled.shared = compiled.code in component_codes
            keys = compiled.first_keys
            if keys is None:
                needs = compiled.needs
                if needs is None:
                    always.append(compiled)
                else:
                    gated.append((compiled, needs))
            elif len(keys) == 1:
                by_key.setdefault(next(iter(keys)), []).append(compiled)
            elif keys:
                multi.append((compiled, tuple(sorted(keys))))
        return cls({k: tuple(v) for k, v in by_key.items()}, tuple(multi), tuple(always), tuple(gated))

    def run(self, resource: dict[str, Any], slots: Sequence[list[Any]]) -> None:
        """Extract every parameter that can select something from ``resource`` into ``slots``."""
        by_key = self.by_key
        memo: Memo = {}
        for key in resource:
            found = by_key.get(key)
            if found is not None:
                for compiled in found:
                    compiled.extract(resource, slots[compiled.slot], memo)
        for compiled, keys in self.multi:
            for key in keys:
                if key in resource:
                    compiled.extract(resource, slots[compiled.slot], memo)
                    break
        for compiled in self.always:
            compiled.extract(resource, slots[compiled.slot], memo)
        for compiled, needs in self.gated:
            for branch in needs:
                if all(not keys.isdisjoint(resource) for keys in branch):
                    compiled.extract(resource, slots[compiled.slot], memo)
                    break

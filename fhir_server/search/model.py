"""The backend-neutral query model.

A :class:`SearchQuery` is an AND of :class:`Clause` s; each clause is an OR of values of one search parameter.
Backends compile it (SQL, Mongo filters); the in-memory matcher evaluates it against one resource.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenValue:
    """``system|code`` with the spec's three forms: ``code`` (system None: any), ``|code`` (system ""), ``system|``."""

    system: str | None
    code: str | None


@dataclass(frozen=True)
class Clause:
    param: str  # the search parameter code, e.g. "identifier", or "_id"
    kind: str  # "id" | "token"
    values: tuple[TokenValue, ...]  # OR
    modifier: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    resource_type: str
    clauses: tuple[Clause, ...]  # AND

    def describe(self) -> str:
        parts = []
        for c in self.clauses:
            vals = ",".join(
                (v.code or "") if v.system is None else f"{v.system}|{v.code or ''}" for v in c.values
            )
            parts.append(f"{c.param}={vals}")
        return f"{self.resource_type}?{'&'.join(parts)}"

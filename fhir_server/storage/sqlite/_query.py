"""Compile the query model to SQL over the SQLite index tables."""

from __future__ import annotations

from typing import Any

from fhir_server.search.model import Clause, SearchQuery, TokenValue


def _token_condition(value: TokenValue, args: list[Any]) -> str:
    parts = []
    if value.code is not None:
        parts.append("t.code = ?")
        args.append(value.code)
    if value.system == "":
        parts.append("t.system IS NULL")
    elif value.system is not None:
        parts.append("t.system = ?")
        args.append(value.system)
    return "(" + " AND ".join(parts or ["1"]) + ")"


def _clause(clause: Clause, args: list[Any]) -> str:
    if clause.kind == "id":
        marks = ",".join("?" for _ in clause.values)
        args.extend(v.code for v in clause.values)
        return f"r.id IN ({marks})"
    if clause.kind == "token":
        args.append(clause.param)
        ors = " OR ".join(_token_condition(v, args) for v in clause.values)
        return f"EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND ({ors}))"
    raise ValueError(f"unsupported clause kind {clause.kind}")


def compile_find(query: SearchQuery, limit: int) -> tuple[str, list[Any]]:
    args: list[Any] = [query.resource_type]
    where = ["r.type = ?", "r.deleted = 0"]
    where.extend(_clause(c, args) for c in query.clauses)
    args.append(limit)
    return f"SELECT r.id FROM resources r WHERE {' AND '.join(where)} ORDER BY r.rid LIMIT ?", args

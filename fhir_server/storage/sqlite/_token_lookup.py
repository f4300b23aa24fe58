"""The shape of a conditional look-up by one token parameter, and its SQL arguments, without compiling it.

A conditional create or update by identifier (``Patient?identifier=system|value``) is compiled to the same SQL
text every time; only the bound values differ.  :func:`token_shape` names that text — the resource type, the
parameter and its id (inlined in the SQL), the modifier and, per value, which of ``system`` and ``code`` are
given — and :func:`token_args` lists the values in the order :class:`._search_sql.Compiler` binds them
(``_token``: the ``:of-type`` type, then code, then system; a value with neither binds nothing).  Other queries
have no shape and are compiled as before.  tests/storage/test_sqlite_lookup_memo.py compares both with the
compiler on varied queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable
from typing import Any

from fhir_server.search.model import Clause, SearchQuery, TokenValue
from fhir_server.storage.sqlite._index_rows import ParamIds


def _single_token_clause(query: SearchQuery) -> Clause | None:
    if query.resource_type is None or len(query.criteria) != 1:
        return None
    clause = query.criteria[0]
    if not isinstance(clause, Clause) or clause.type != "token" or clause.modifier not in (None, "of-type"):
        return None
    if not clause.values or not all(isinstance(v, TokenValue) for v in clause.values):
        return None
    return clause


def token_shape(conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery) -> Hashable | None:
    clause = _single_token_clause(query)
    if clause is None:
        return None
    assert query.resource_type is not None
    pid = ids.get(conn, query.resource_type, clause.param)
    if pid is None:
        return None
    given = tuple((v.system is not None, v.code is not None) for v in clause.values if isinstance(v, TokenValue))
    return query.resource_type, clause.param, pid, clause.modifier, given


def token_args(query: SearchQuery) -> list[Any]:
    """The arguments of a query that has a shape (see the module's docstring)."""
    clause = query.criteria[0]
    assert isinstance(clause, Clause)
    args: list[Any] = []
    for v in clause.values:
        assert isinstance(v, TokenValue)
        if v.code is None and v.system is None:
            continue
        if clause.modifier == "of-type":
            args.extend((v.type_system or "", v.type_code or ""))
        if v.code is not None:
            args.append(v.code)
        if v.system is not None:
            args.append(v.system)
    args.append(query.resource_type)
    return args

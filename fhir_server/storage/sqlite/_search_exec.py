"""Run searches on SQLite: the page query with keyset paging, the total, and includes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.search.model import Clause, SearchQuery, SortKey
from fhir_server.storage.base import IncludeSpec, SearchPage, SearchRequest, StoredVersion
from fhir_server.storage.cursors import decode_cursor, encode_cursor
from fhir_server.storage.sqlite._index_rows import ParamIds
from fhir_server.storage.sqlite._search_sql import TABLE, Compiler, TypeCounts
from fhir_server.storage.sqlite._token_lookup import token_args, token_shape

MAX_INCLUDE_ROUNDS = 4
_COLUMNS = "r.rid, r.type, r.id, r.version, v.last_updated, v.method, v.body"

_SORT_AGG = {
    "string": ("norm", "norm"),
    "token": ("code", "code"),
    "date": ("low", "high"),
    "number": ("value", "value"),
    "quantity": ("value", "value"),
    "uri": ("uri", "uri"),
    "reference": ("type || '/' || id", "type || '/' || id"),
}


@dataclass
class MatchSql:
    """FROM … WHERE … of the match set, with its arguments (the resources alias is ``r``)."""

    source: str
    where: str
    args: list[Any]


def _match(compiler: Compiler, query: SearchQuery, *, sorted_by_rid: bool = True) -> MatchSql:
    """Resource type(s), not deleted, every criterion; for one type, driven by its most selective criterion."""
    types = (query.resource_type,) if query.resource_type else query.types
    if len(types) == 1:
        rtype = types[0]
        driver, rest = compiler.driver(query.criteria, rtype, sorted_by_rid=sorted_by_rid)
        conds = [compiler.cond(c, rtype, "r") for c in rest]
        where = " AND ".join(["r.type = ?", "r.deleted = 0", *(c.sql for c in conds)])
        args: list[Any] = [rtype, *(a for c in conds for a in c.args)]
        if driver is None:
            return MatchSql("resources r", where, args)
        sel = driver.select()
        rid_col = driver.rid.rsplit(".", 1)[-1]
        return MatchSql(f"({sel.sql}) m CROSS JOIN resources r ON r.rid = m.{rid_col}", where, [*sel.args, *args])
    parts = ["r.deleted = 0"]
    args = []
    if types:
        per_type = []
        for rtype in types:
            conds = [compiler.cond(c, rtype, "r") for c in query.criteria]
            per_type.append("(" + " AND ".join(["r.type = ?", *(c.sql for c in conds)]) + ")")
            args.extend([rtype, *(a for c in conds for a in c.args)])
        parts.append("(" + " OR ".join(per_type) + ")")
    else:
        conds = [compiler.cond(c, "Resource", "r") for c in query.criteria]
        parts.extend(c.sql for c in conds)
        args.extend(a for c in conds for a in c.args)
    return MatchSql("resources r", " AND ".join(parts), args)


def _sort_columns(compiler: Compiler, query: SearchQuery) -> list[tuple[str, bool]]:
    """(expression, descending) per ORDER BY column; every key sorts resources without a value last."""
    columns: list[tuple[str, bool]] = []
    for key in query.sort:
        expr = _sort_expr(compiler, query, key)
        columns.append((f"(({expr}) IS NULL)", False))
        columns.append((expr, key.descending))
    columns.append(("r.rid", False))
    return columns


def _sort_expr(compiler: Compiler, query: SearchQuery, key: SortKey) -> str:
    if key.param == "_id":
        return "r.id"
    if key.param == "_lastUpdated":
        return "r.lu"
    assert query.resource_type is not None
    pid = compiler.pid(query.resource_type, key.param)
    if pid is None:
        return "NULL"
    asc_col, desc_col = _SORT_AGG[key.type]
    agg, col = ("max", desc_col) if key.descending else ("min", asc_col)
    table = TABLE[key.type]
    # INDEXED BY: without it SQLite's min/max optimisation walks the (pid, value) index of the whole parameter
    return (f"(SELECT {agg}({col}) FROM {table} INDEXED BY {table}_rid "
            f"WHERE rid = r.rid AND pid = {int(pid)} AND grp = 0)")


def _keyset(columns: list[tuple[str, bool]], values: list[Any], forward: bool, args: list[Any]) -> str:
    """Rows strictly after (forward) or before the cursor row in the ORDER BY order."""
    ors = []
    for i, (expr, desc) in enumerate(columns):
        ands = []
        for j in range(i):
            ands.append(f"{columns[j][0]} IS ?")
            args.append(values[j])
        after = (not desc) if forward else desc
        ands.append(f"{expr} {'>' if after else '<'} ?")
        args.append(values[i])
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")"


def _stored(row: tuple[Any, ...]) -> StoredVersion:
    _rid, rtype, rid_id, version, last_updated, method, body = row[:7]
    return StoredVersion(rtype, rid_id, version, last_updated, method, body)


def search_page(
    conn: sqlite3.Connection, ids: ParamIds, request: SearchRequest, counts: TypeCounts | None = None
) -> SearchPage:
    query = request.query
    conn.execute("BEGIN")  # one snapshot for the page, the total and the includes
    try:
        compiler = Compiler(conn, ids, counts=counts)
        match = _match(compiler, query, sorted_by_rid=not query.sort)
        where, args = match.where, list(match.args)
        columns = _sort_columns(compiler, query)
        forward = True
        if request.cursor is not None:
            values, forward = decode_cursor(request.cursor)
            if len(values) != len(columns):
                raise InvalidRequest("_cursor does not belong to this search", expression="_cursor")
            where += " AND " + _keyset(columns, values, forward, args)
        order = ", ".join(f"{e} {'DESC' if d != (not forward) else 'ASC'}" for e, d in columns)
        select_cols = ", ".join(e for e, _ in columns)
        sql = (f"SELECT {_COLUMNS}, {select_cols} FROM {match.source} JOIN versions v ON v.seq = r.current_seq "
               f"WHERE {where} ORDER BY {order} LIMIT ?")
        rows = conn.execute(sql, [*args, request.count + 1]).fetchall() if request.count else []
        more = len(rows) > request.count
        rows = rows[: request.count]
        if not forward:
            rows.reverse()
        keys = [list(row[7:]) for row in rows]
        had_cursor = request.cursor is not None
        next_cursor = encode_cursor(keys[-1], True) if rows and (more if forward else had_cursor) else None
        prev_cursor = encode_cursor(keys[0], False) if rows and (had_cursor if forward else more) else None
        total = None
        if request.total:
            total = _count_within(conn, ids, query, request.total_budget_ms, counts)
        matches = [_stored(row) for row in rows]
        included = _includes(conn, ids, [(row[0], row[1], row[2]) for row in rows], request.includes)
    finally:
        conn.execute("COMMIT")
    return SearchPage(matches, included, total, next_cursor, prev_cursor)


def _count_within(
    conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery, budget_ms: int | None, counts: TypeCounts | None
) -> int | None:
    """The number of matches, or None when counting would take longer than ``budget_ms`` (no budget: exact)."""
    if budget_ms is None:
        return _count(conn, ids, query, counts)
    deadline = time.monotonic() + budget_ms / 1000
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 2000)
    try:
        return _count(conn, ids, query, counts)
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        return None
    finally:
        conn.set_progress_handler(None, 0)


def _count(conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery, counts: TypeCounts | None = None) -> int:
    compiler = Compiler(conn, ids, counts=counts)
    types = (query.resource_type,) if query.resource_type else query.types
    single = query.criteria[0] if len(query.criteria) == 1 else None
    if len(types) == 1 and isinstance(single, Clause) and single.type not in ("text", "content"):
        # one indexed criterion: count its distinct rids (index rows exist only for live resources of the type)
        rids = compiler.rids(single, types[0])
        if rids is not None:
            sel = rids.select()
            return int(conn.execute(f"SELECT count(*) FROM ({sel.sql})", sel.args).fetchone()[0])
    match = _match(compiler, query, sorted_by_rid=False)
    return int(conn.execute(f"SELECT count(*) FROM {match.source} WHERE {match.where}", match.args).fetchone()[0])


def count_matches(conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery, counts: TypeCounts | None = None) -> int:
    return _count(conn, ids, query, counts)


def find_ids(conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery, limit: int) -> list[str]:
    """Ids of the first ``limit`` matches (conditional interactions need to know 0, 1 or many)."""
    sql, args = find_sql(conn, ids, query)
    return [str(row[0]) for row in conn.execute(sql, [*args, limit])]


def find_sql(conn: sqlite3.Connection, ids: ParamIds, query: SearchQuery) -> tuple[str, list[Any]]:
    """The SQL of :func:`find_ids` (its last parameter, the limit, left out).  A conditional look-up by one token
    parameter (``identifier=system|value``: almost all of them) takes its SQL text from a cache by the query's
    shape and only its arguments from the values (:mod:`._token_lookup`)."""
    shape = token_shape(conn, ids, query)
    if shape is not None:
        sql = _FIND_SQL.get(shape)
        if sql is not None:
            return sql, token_args(query)
    match = _match(Compiler(conn, ids), query, sorted_by_rid=False)
    sql = f"SELECT r.id FROM {match.source} WHERE {match.where} ORDER BY r.rid LIMIT ?"
    if shape is not None:
        if len(_FIND_SQL) >= 4096:
            _FIND_SQL.clear()
        _FIND_SQL[shape] = sql
    return sql, match.args


_FIND_SQL: dict[Hashable, str] = {}


def _includes(
    conn: sqlite3.Connection, ids: ParamIds, page: list[tuple[int, str, str]], specs: tuple[IncludeSpec, ...]
) -> list[StoredVersion]:
    if not specs or not page:
        return []
    seen = {rid for rid, _, _ in page}
    frontier = page
    found: list[int] = []
    for round_ in range(MAX_INCLUDE_ROUNDS):
        new: list[int] = []
        for spec in specs:
            if round_ > 0 and not spec.iterate:
                continue
            for rid in _include_step(conn, ids, frontier, spec):
                if rid not in seen:
                    seen.add(rid)
                    new.append(rid)
        if not new:
            break
        found.extend(new)
        marks = ",".join("?" for _ in new)
        frontier = [(int(row[0]), str(row[1]), str(row[2])) for row in conn.execute(
            f"SELECT rid, type, id FROM resources WHERE rid IN ({marks})", new)]
    if not found:
        return []
    marks = ",".join("?" for _ in found)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.current_seq "
        f"WHERE r.rid IN ({marks}) AND r.deleted = 0 ORDER BY r.rid", found,
    ).fetchall()
    return [_stored(row) for row in rows]


def _include_step(
    conn: sqlite3.Connection, ids: ParamIds, frontier: list[tuple[int, str, str]], spec: IncludeSpec
) -> list[int]:
    pids = [p for p in (ids.get(conn, spec.source_type, code) for code in spec.params) if p is not None]
    if not pids:
        return []
    pid_list = ",".join(str(int(p)) for p in pids)
    if not spec.reverse:
        rids = [rid for rid, rtype, _ in frontier if rtype == spec.source_type]
        if not rids:
            return []
        marks = ",".join("?" for _ in rids)
        args: list[Any] = list(rids)
        target = ""
        if spec.target_type:
            target = " AND t.type = ?"
            args.append(spec.target_type)
        sql = (f"SELECT DISTINCT t.rid FROM idx_reference ref JOIN resources t ON t.type = ref.type "
               f"AND t.id = ref.id WHERE ref.rid IN ({marks}) AND ref.pid IN ({pid_list}) "
               f"AND t.deleted = 0{target}")
        return [row[0] for row in conn.execute(sql, args)]
    out: list[int] = []
    by_type: dict[str, list[str]] = {}
    for _, rtype, rid_id in frontier:
        if spec.target_type is None or spec.target_type == rtype:
            by_type.setdefault(rtype, []).append(rid_id)
    for rtype, id_list in by_type.items():
        marks = ",".join("?" for _ in id_list)
        sql = (f"SELECT DISTINCT ref.rid FROM idx_reference ref WHERE ref.pid IN ({pid_list}) "
               f"AND ref.type = ? AND ref.id IN ({marks})")
        out.extend(row[0] for row in conn.execute(sql, [rtype, *id_list]))
    return out

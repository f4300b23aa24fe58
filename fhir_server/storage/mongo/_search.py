"""Run searches on MongoDB: the page query with keyset paging, the total, and includes.

Results come in the order the SQLite backend gives: the ``_sort`` keys (resources without a value last, in both
directions), then ``rid`` (the order resources were first created), then ``_id``.  A page is "the next N after this position"
(a keyset cursor over the sort columns and ``rid``), so concurrent writes never shift the pages, and on a sharded
cluster each shard answers the same indexed range query and mongos merges the sorted streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ExecutionTimeout

from fhir_server.errors import InvalidRequest
from fhir_server.search.model import SearchQuery, SortKey
from fhir_server.storage.base import IncludeSpec, SearchPage, SearchRequest, StoredVersion
from fhir_server.storage.cursors import decode_cursor, encode_cursor
from fhir_server.storage.mongo._bodies import versions
from fhir_server.storage.mongo._compile import SYSTEM, Compiler, Filter, all_of, any_of, key, live
from fhir_server.storage.mongo._documents import sort_field
from fhir_server.storage.mongo._filters import NOTHING

MAX_INCLUDE_ROUNDS = 4
PAGE_FIELDS = {"_id": 0, "rid": 1, "type": 1, "id": 1, "ver": 1, "lut": 1, "m": 1, "body": 1, "bc": 1, "seq": 1}


@dataclass(frozen=True)
class Column:
    """One sort column: a document field, its direction, and whether it is the presence flag of a sort key
    (1 when the resource has a value, missing otherwise; sorted descending so that missing comes last)."""

    field: str
    descending: bool
    flag: bool = False


async def match_filter(compiler: Compiler, query: SearchQuery) -> Filter:
    """Resource type(s), not deleted, every criterion."""
    types = (query.resource_type,) if query.resource_type else query.types
    if len(types) == 1:
        return await compiler.query(query.criteria, types[0])
    if types:
        return any_of([await compiler.query(query.criteria, t) for t in types])
    return await compiler.query(query.criteria, SYSTEM)


def columns(query: SearchQuery) -> list[Column]:
    out: list[Column] = []
    for sort in query.sort:
        out.extend(_sort_columns(sort))
    out.append(Column("rid", False))
    out.append(Column("_id", False))  # rid is unique but for a 1 in 4096 chance per microsecond: _id settles it
    return out


def _sort_columns(sort: SortKey) -> list[Column]:
    if sort.param == "_id":
        return [Column("id", sort.descending)]
    if sort.param == "_lastUpdated":
        return [Column("lu", sort.descending)]
    base = f"srt.{sort_field(sort.param)}"
    return [Column(f"{base}.e", True, flag=True), Column(f"{base}.{'d' if sort.descending else 'a'}", sort.descending)]


def _value(doc: dict[str, Any], path: str) -> Any:
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _after(column: Column, value: Any, forward: bool) -> Filter:
    """Documents strictly after ``value`` in this column's order (before it when paging backwards)."""
    descending = column.descending == forward  # the direction we move in, in the field's own order
    if value is None:
        # only a presence flag or a value of a resource without one is missing: missing sorts last
        return NOTHING if forward else {column.field: {"$ne": None}}
    if column.flag:
        return {column.field: None} if forward else NOTHING
    return {column.field: {"$lt" if descending else "$gt": value}}


def keyset(cols: list[Column], values: list[Any], forward: bool) -> Filter:
    """Rows strictly after (forward) or before the cursor row in the sort order."""
    ors: list[Filter] = []
    for i, column in enumerate(cols):
        equal = [{cols[j].field: values[j]} for j in range(i)]
        after = _after(column, values[i], forward)
        if after is NOTHING:
            continue
        ors.append(all_of([*equal, after]))
    return any_of(ors)


def sort_spec(cols: list[Column], forward: bool) -> list[tuple[str, int]]:
    return [(c.field, (-1 if c.descending else 1) * (1 if forward else -1)) for c in cols]


async def search_page(
    resources: AsyncCollection[Any], session: AsyncClientSession | None, request: SearchRequest
) -> SearchPage:
    query = request.query
    compiler = Compiler(resources, session)
    flt = await match_filter(compiler, query)
    cols = columns(query)
    forward = True
    page_filter = flt
    if request.cursor is not None:
        values, forward = decode_cursor(request.cursor)
        if len(values) != len(cols):
            raise InvalidRequest("_cursor does not belong to this search", expression="_cursor")
        page_filter = all_of([flt, keyset(cols, values, forward)])
    fields = {**PAGE_FIELDS, **{c.field: 1 for c in cols}}
    docs: list[dict[str, Any]] = []
    if request.count:
        cursor = resources.find(page_filter, fields, sort=sort_spec(cols, forward), limit=request.count + 1,
                                session=session)
        docs = [doc async for doc in cursor]
    more = len(docs) > request.count
    docs = docs[: request.count]
    if not forward:
        docs.reverse()
    keys = [[_value(doc, c.field) for c in cols] for doc in docs]
    had_cursor = request.cursor is not None
    next_cursor = encode_cursor(keys[-1], True) if docs and (more if forward else had_cursor) else None
    prev_cursor = encode_cursor(keys[0], False) if docs and (had_cursor if forward else more) else None
    total = None
    if request.total:
        total = await count_within(resources, session, flt, request.total_budget_ms)
    included = await includes(resources, session, docs, request.includes)
    return SearchPage(await versions(resources, docs, session), included, total, next_cursor, prev_cursor)


async def count_within(
    resources: AsyncCollection[Any], session: AsyncClientSession | None, flt: Filter, budget_ms: int | None
) -> int | None:
    """The number of matches, or None when counting would take longer than ``budget_ms`` (no budget: exact)."""
    if budget_ms is None:
        return await resources.count_documents(flt, session=session)
    try:
        return await resources.count_documents(flt, session=session, maxTimeMS=max(1, budget_ms))
    except ExecutionTimeout:
        return None


async def find_ids(
    resources: AsyncCollection[Any], session: AsyncClientSession | None, query: SearchQuery, limit: int
) -> list[str]:
    """Ids of the first ``limit`` matches (conditional interactions need to know 0, 1 or many)."""
    flt = await match_filter(Compiler(resources, session), query)
    cursor = resources.find(flt, {"_id": 0, "id": 1}, sort=[("rid", 1)], limit=limit, session=session)
    return [doc["id"] async for doc in cursor]


async def count_matches(resources: AsyncCollection[Any], session: AsyncClientSession | None,
                        query: SearchQuery) -> int:
    flt = await match_filter(Compiler(resources, session), query)
    return await resources.count_documents(flt, session=session)


# -- _include / _revinclude -----------------------------------------------------------------------------------

Member = tuple[int, str, str]  # rid, type, id


async def includes(
    resources: AsyncCollection[Any], session: AsyncClientSession | None, page: list[dict[str, Any]],
    specs: tuple[IncludeSpec, ...],
) -> list[StoredVersion]:
    if not specs or not page:
        return []
    frontier: list[Member] = [(d["rid"], d["type"], d["id"]) for d in page]
    seen = {rid for rid, _, _ in frontier}
    found: list[Member] = []
    for round_ in range(MAX_INCLUDE_ROUNDS):
        new: list[Member] = []
        for spec in specs:
            if round_ > 0 and not spec.iterate:
                continue
            for member in await _include_step(resources, session, frontier, spec):
                if member[0] not in seen:
                    seen.add(member[0])
                    new.append(member)
        if not new:
            break
        found.extend(new)
        frontier = new
    if not found:
        return []
    cursor = resources.find({"_id": {"$in": [key(t, i) for _, t, i in found]}, "del": False}, PAGE_FIELDS,
                            sort=[("rid", 1)], session=session)
    return await versions(resources, [doc async for doc in cursor], session)


async def _include_step(
    resources: AsyncCollection[Any], session: AsyncClientSession | None, frontier: list[Member], spec: IncludeSpec
) -> list[Member]:
    fields = {"_id": 0, "rid": 1, "type": 1, "id": 1}
    params = list(spec.params)
    if not spec.reverse:
        sources = [key(t, i) for _, t, i in frontier if t == spec.source_type]
        if not sources:
            return []
        targets: set[str] = set()
        cursor = resources.find({"_id": {"$in": sources}}, {"_id": 0, "ix.r": 1}, session=session)
        async for doc in cursor:
            for ref in (doc.get("ix") or {}).get("r", []):
                if ref["p"] in params and ref["t"] and ref["i"] and spec.target_type in (None, ref["t"]):
                    targets.add(key(ref["t"], ref["i"]))
        if not targets:
            return []
        cursor = resources.find({"_id": {"$in": sorted(targets)}, "del": False}, fields, session=session)
        return [(d["rid"], d["type"], d["id"]) async for d in cursor]
    by_type: dict[str, list[str]] = {}
    for _, rtype, rid_id in frontier:
        if spec.target_type is None or spec.target_type == rtype:
            by_type.setdefault(rtype, []).append(rid_id)
    out: list[Member] = []
    for rtype, ids in by_type.items():
        flt = {**live(spec.source_type),
               "ix.r": {"$elemMatch": {"p": {"$in": params}, "t": rtype, "i": {"$in": ids}}}}
        cursor = resources.find(flt, fields, session=session)
        out.extend([(d["rid"], d["type"], d["id"]) async for d in cursor])
    return out

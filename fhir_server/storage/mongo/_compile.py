"""Compile the query model to a MongoDB filter document on the ``resources`` collection.

Plain criteria become ``$elemMatch`` conditions on the embedded index arrays (see :mod:`._filters`).  Criteria
that depend on *other* resources are resolved first, in the same session (and snapshot), and become conditions
on the resources they lead to:

* a chain (``subject:Patient.name=x``): the inner criterion is compiled for each target type, the ids of the
  matching targets are read (``find`` with a projection, served by the target's own indexes), and the outer
  condition is a reference entry of the chain's parameter pointing at one of them (``ix.r`` ``$elemMatch`` with
  ``i: {$in: ids}``, served by the ``(type, ix.r.p, ix.r.i, ix.r.t)`` index);
* ``_has``: an aggregation pipeline over the source type (``$match`` the inner criterion, ``$unwind`` the
  references, keep those of the parameter that point at the searched type, ``$group`` by id) gives the ids;
* ``_list``: the same pipeline over the List resources named;
* ``near``: the candidates in the latitude band come from the index, the great-circle distance is checked here.

Resolving inner-first keeps every step an indexed query and works the same on a sharded cluster (``$lookup``
into a sharded collection is not possible before MongoDB 5.1 and is scatter-gather after); the price is that a
chain whose inner criterion matches very many resources carries all their ids in one ``$in``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.search.matcher import fulltext_tokens
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    MissingValue,
    NearValue,
    Not,
    StringValue,
    TokenValue,
)
from fhir_server.search.values import great_circle_km
from fhir_server.storage.mongo._documents import ARRAY
from fhir_server.storage.mongo._filters import (
    NOTHING,
    Alts,
    _prefix_range,
    conj,
    date_alts,
    elem_match,
    regex_literal,
    top_level,
    value_alts,
    with_param,
)

Filter = dict[str, Any]
EVERYTHING: Filter = {}
SYSTEM = "Resource"  # the "type" a system search without _type compiles its criteria for


def key(resource_type: str, id: str) -> str:
    """The ``_id`` of a resource's current document."""
    return f"{resource_type}/{id}"


def all_of(filters: Sequence[Filter]) -> Filter:
    parts = [f for f in filters if f]
    if not parts:
        return EVERYTHING
    return parts[0] if len(parts) == 1 else {"$and": parts}


def any_of(filters: Sequence[Filter]) -> Filter:
    parts = list(filters)
    if not parts:
        return NOTHING
    if any(not f for f in parts):
        return EVERYTHING
    return parts[0] if len(parts) == 1 else {"$or": parts}


def live(resource_type: str | None) -> Filter:
    """Current, non-deleted resources (of one type)."""
    return {"del": False} if resource_type in (None, SYSTEM) else {"type": resource_type, "del": False}


@dataclass
class Compiler:
    resources: AsyncCollection[Any]
    session: AsyncClientSession | None = None
    now: float | None = None
    resolved: list[tuple[str, Filter]] = field(default_factory=list)  # the look-ups made (for tests and logs)

    async def query(self, criteria: Sequence[Criterion], resource_type: str) -> Filter:
        """Live resources of the type matching every criterion."""
        compiled = [await self.criterion(c, resource_type) for c in criteria]
        return all_of([live(resource_type), *compiled])

    async def criterion(self, c: Criterion, resource_type: str) -> Filter:
        match c:
            case Not():
                return {"$nor": [await self.criterion(c.inner, resource_type) or EVERYTHING]}
            case AnyOf():
                return any_of([await self.criterion(i, resource_type) for i in c.criteria])
            case Chain():
                return await self._chain(c, resource_type)
            case Has():
                return await self._has(c, resource_type)
            case Clause():
                return await self._clause(c, resource_type)
        raise TypeError(c)

    # -- clauses ----------------------------------------------------------------------------------------------

    async def _clause(self, c: Clause, resource_type: str) -> Filter:
        if c.modifier == "missing":
            return self._missing(c)
        match c.type:
            case "id":
                ids = [v.code for v in c.values if isinstance(v, TokenValue) and v.code is not None]
                if resource_type == SYSTEM:
                    return {"id": {"$in": ids}}
                return {"_id": {"$in": [key(resource_type, i) for i in ids]}}
            case "lastUpdated":
                return top_level([alt for v in c.values if isinstance(v, DateValue)
                                  for alt in date_alts(v, "lu", "lu", self.now)])
            case "list":
                return await self._list(c, resource_type)
            case "text" | "content":
                return await self._fulltext(c, resource_type)
            case "composite":
                return composite(c)
            case "near":
                return await self._near(c, resource_type)
        alts = [alt for v in c.values for alt in value_alts(c.type, c.modifier, v, self.now)]
        return elem_match(f"ix.{ARRAY[c.type]}", with_param(c.param, alts))

    def _missing(self, c: Clause) -> Filter:
        value = c.values[0]
        assert isinstance(value, MissingValue)
        if c.type in ("id", "lastUpdated"):
            return NOTHING if value.missing else EVERYTHING  # every resource has an id and a lastUpdated
        path = f"ix.{ARRAY[c.type]}.p"
        return {path: {"$ne": c.param}} if value.missing else {path: c.param}

    # -- criteria on other resources ------------------------------------------------------------------------

    async def _ids(self, resource_type: str, flt: Filter) -> list[str]:
        self.resolved.append((resource_type, flt))
        cursor = self.resources.find(flt, {"_id": 0, "id": 1}, session=self.session)
        return [doc["id"] async for doc in cursor]

    async def _referenced_ids(self, source: Filter, ref_param: str, target_type: str) -> list[str]:
        """Ids of ``target_type`` resources that the ``ref_param`` references of the ``source`` resources name."""
        self.resolved.append((target_type, source))
        pipeline: list[dict[str, Any]] = [
            {"$match": source},
            {"$project": {"_id": 0, "r": "$ix.r"}},
            {"$unwind": "$r"},
            {"$match": {"r.p": ref_param, "r.t": target_type}},
            {"$group": {"_id": "$r.i"}},
        ]
        cursor = await self.resources.aggregate(pipeline, session=self.session)
        return [doc["_id"] async for doc in cursor if doc["_id"]]

    def _by_ids(self, resource_type: str, ids: list[str]) -> Filter:
        if resource_type == SYSTEM:
            return {"id": {"$in": ids}}
        return {"_id": {"$in": [key(resource_type, i) for i in ids]}}

    async def _chain(self, c: Chain, resource_type: str) -> Filter:
        alts: Alts = []
        for target in c.target_types:
            inner = await self.criterion(c.inner, target)
            ids = await self._ids(target, all_of([live(target), inner]))
            if ids:
                alts.append({"p": c.param, "t": target, "i": {"$in": ids}})
        return elem_match("ix.r", alts)

    async def _has(self, c: Has, resource_type: str) -> Filter:
        inner = await self.criterion(c.inner, c.source_type)
        ids = await self._referenced_ids(all_of([live(c.source_type), inner]), c.ref_param, resource_type)
        return self._by_ids(resource_type, ids)

    async def _list(self, c: Clause, resource_type: str) -> Filter:
        list_ids = [v.code for v in c.values if isinstance(v, TokenValue) and v.code is not None]
        lists = {**live("List"), "id": {"$in": list_ids}}
        return self._by_ids(resource_type, await self._referenced_ids(lists, "item", resource_type))

    async def _fulltext(self, c: Clause, resource_type: str) -> Filter:
        """``_text``/``_content``: every word of a value must start a word of the text (values are OR'ed).  The
        text of large resources is kept in parts beside them (``fulltext``): a word found in a part is a
        condition on the part's resource."""
        field = "n" if c.type == "text" else "c"
        per_value: list[Filter] = []
        for value in c.values:
            assert isinstance(value, StringValue)
            words = value.norm.split()
            if not words:
                continue
            conditions: list[Filter] = []
            for word in words:
                phrase = fulltext_tokens(word.replace('"', ""))
                if not phrase:
                    conditions = [NOTHING]
                    break
                inline = _word(phrase, f"ft.{field}", f"ft.{field}s")
                part = all_of([{"f": field}, _word(phrase, "t", "s")])
                if resource_type != SYSTEM:
                    part = all_of([{"type": resource_type}, part])
                self.resolved.append(("fulltext", part))
                cursor = self.resources.database["fulltext"].find(part, {"_id": 0, "k": 1}, session=self.session)
                keys = sorted({doc["k"] async for doc in cursor})
                conditions.append(any_of([inline, {"_id": {"$in": keys}}]) if keys else inline)
            per_value.append(all_of(conditions))
        return any_of(per_value)

    async def _near(self, c: Clause, resource_type: str) -> Filter:
        """Locations within the distance: a latitude band from the index, then the great-circle distance."""
        ids: set[str] = set()
        for value in c.values:
            assert isinstance(value, NearValue)
            band = value.distance_km / 111.0 + 1e-9
            lat_range = {"$gte": value.latitude - band, "$lte": value.latitude + band}
            flt = all_of([live(resource_type), {"ix.c": {"$elemMatch": {
                "p": c.param, "k0": {"$elemMatch": {"k": "n", "v": lat_range}}}}}])
            self.resolved.append((resource_type, flt))
            cursor = self.resources.find(flt, {"_id": 0, "id": 1, "ix.c": 1}, session=self.session)
            async for doc in cursor:
                if any(_within(element, value, lat_range) for element in doc["ix"]["c"] if element["p"] == c.param):
                    ids.add(doc["id"])
        return self._by_ids(resource_type, sorted(ids))


def _within(element: dict[str, Any], value: NearValue, lat_range: dict[str, float]) -> bool:
    lats = [e["v"] for e in element.get("k0", []) if e.get("k") == "n"]
    lons = [e["v"] for e in element.get("k1", []) if e.get("k") == "n"]
    return any(
        lat_range["$gte"] <= lat <= lat_range["$lte"]
        and great_circle_km(lat, lon, value.latitude, value.longitude) <= value.distance_km
        for lat in lats for lon in lons
    )


_KIND_OF_TYPE = {"string": "s", "token": "t", "date": "d", "number": "n", "quantity": "q", "reference": "r",
                 "uri": "u"}


def composite(c: Clause) -> Filter:
    """Some element of the composite parameter matching every part of some value (parts of one element)."""
    alts: Alts = []
    for value in c.values:
        assert isinstance(value, CompositeValue)
        per_component: list[Alts] = []
        for index, (ptype, part) in enumerate(zip(c.components, value.parts, strict=True)):
            kind = _KIND_OF_TYPE.get(ptype)
            part_alts = value_alts(ptype, None, part) if kind is not None else []
            per_component.append([{f"k{index}": {"$elemMatch": {"k": kind, **alt}}} for alt in part_alts])
        alts.extend(conj([{"p": c.param}], *per_component))
    return elem_match("ix.c", alts)


def _word(phrase: tuple[str, ...], tokens: str, sequence: str) -> Filter:
    """One word of a full-text value: its first token (as a prefix when it is the only one), and for a word the
    tokenizer splits (``o'brien``) the consecutive tokens, the last as a prefix."""
    if len(phrase) == 1:
        return {tokens: _prefix_range(phrase[0])}
    return {"$and": [{tokens: phrase[0]}, {sequence: {"$regex": regex_literal(" " + " ".join(phrase))}}]}

"""Everything in a compartment (``Patient/[id]/$everything``) on MongoDB.

The same three sections as the SQLite backend (see :class:`~fhir_server.storage.base.EverythingRequest`), each
in ``rid`` order, paged by one keyset cursor ``(section, rid)``:

0. the compartment resource (instance level), or every resource of the compartment type (type level);
1. members: live resources with a ``links`` reference to the compartment resource (type level: to any resource
   of its type), through the reference index (``type, ix.r.p, ix.r.i, ix.r.t``);
2. includes: what the compartment resource and the members reference through ``follow`` parameters that is in
   no compartment of the type.  The referenced keys are gathered from the sources' reference entries (an
   aggregation ``$unwind``/``$group`` at type level), then read by ``_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ExecutionTimeout

from fhir_server.errors import InvalidRequest
from fhir_server.storage.base import EverythingRequest, SearchPage
from fhir_server.storage.cursors import decode_cursor, encode_cursor
from fhir_server.storage.mongo._bodies import versions as stored_versions
from fhir_server.storage.mongo._compile import Filter, all_of, any_of, key
from fhir_server.storage.mongo._filters import NOTHING
from fhir_server.storage.mongo._search import PAGE_FIELDS

SECTIONS = (0, 1, 2)
Coll = AsyncCollection[Any]


def _refs(params: Mapping[str, tuple[str, ...]], target: Filter) -> Filter:
    """A resource of one of the types in ``params`` with a reference, through one of its type's parameters,
    satisfying ``target`` (conditions on the entry's ``t``/``i``)."""
    return any_of([{"type": rtype, "ix.r": {"$elemMatch": {"p": {"$in": list(codes)}, **target}}}
                   for rtype, codes in params.items() if codes])


@dataclass
class _Plan:
    resources: Coll
    session: AsyncClientSession | None
    request: EverythingRequest

    @property
    def ctype(self) -> str:
        return self.request.compartment_type

    @property
    def instance(self) -> bool:
        return self.request.compartment_id is not None

    def linked(self) -> Filter:
        """In some compartment of the type: a link reference to a resource of the compartment type."""
        return _refs(self.request.links, {"t": self.ctype})

    def care(self) -> Filter:
        """No care date, or one that meets ``[care_start, care_end)``."""
        start, end = self.request.care_start, self.request.care_end
        dates = {t: c for t, c in self.request.care_dates.items()}
        if (start is None and end is None) or not dates:
            return {}
        bounds: dict[str, Any] = {}
        if start is not None:
            bounds["hi"] = {"$gt": start}
        if end is not None:
            bounds["lo"] = {"$lt": end}
        per_type: list[Filter] = [{"type": {"$nin": sorted(dates)}}]
        for rtype, code in dates.items():
            per_type.append({"type": rtype, "$or": [{"ix.d.p": {"$ne": code}},
                                                    {"ix.d": {"$elemMatch": {"p": code, **bounds}}}]})
        return {"$or": per_type}

    def returned(self) -> Filter:
        parts: list[Filter] = []
        if self.request.types is not None:
            parts.append({"type": {"$in": sorted(self.request.types)}})
        if self.request.since is not None:
            parts.append({"lut": {"$gte": self.request.since}})
        return all_of(parts)

    def members(self) -> Filter:
        """Instance level: live resources linked to the compartment resource (the resource itself excluded)."""
        link = _refs(self.request.links, {"t": self.ctype, "i": self.request.compartment_id})
        return all_of([{"del": False}, link])

    def own(self) -> str:
        assert self.request.compartment_id is not None
        return key(self.ctype, self.request.compartment_id)

    async def section_filter(self, number: int) -> Filter:
        if number == 0:
            if self.instance:
                return all_of([{"_id": self.own(), "del": False}, self.returned()])
            return all_of([{"type": self.ctype, "del": False}, self.returned()])
        if number == 1:
            if self.instance:
                return all_of([self.members(), {"_id": {"$ne": self.own()}}, self.care(), self.returned()])
            link_types = sorted(t for t in self.request.links if t != self.ctype)
            return all_of([{"del": False, "type": {"$in": link_types}}, self.linked(), self.care(),
                           self.returned()])
        targets = await self._followed()
        if not targets:
            return NOTHING
        return all_of([{"_id": {"$in": sorted(targets)}, "del": False}, {"$nor": [self.linked()]},
                       self.returned()])

    async def _followed(self) -> set[str]:
        """Keys of the resources the sources reference through ``follow`` parameters (not of the compartment
        type; at instance level not the members themselves)."""
        follow = {t: list(c) for t, c in self.request.follow.items() if c}
        if not follow:
            return set()
        if self.instance:
            sources = all_of([self.members(), self.care()])
            member_keys: set[str] = set()
            async for doc in self.resources.find(self.members(), {"_id": 1}, session=self.session):
                member_keys.add(doc["_id"])
            sources = any_of([sources, {"_id": self.own(), "del": False}])
        else:
            sources = all_of([{"del": False}, any_of([{"type": self.ctype}, self.linked()]), self.care()])
            member_keys = set()
        pipeline: list[dict[str, Any]] = [
            {"$match": sources},
            {"$project": {"_id": 0, "type": 1, "r": "$ix.r"}},
            {"$unwind": "$r"},
            {"$match": {"$or": [{"type": t, "r.p": {"$in": codes}} for t, codes in follow.items()],
                        "r.t": {"$nin": ["", self.ctype]}, "r.i": {"$ne": ""}}},
            {"$group": {"_id": {"t": "$r.t", "i": "$r.i"}}},
        ]
        found: set[str] = set()
        async for doc in await self.resources.aggregate(pipeline, session=self.session):
            found.add(key(doc["_id"]["t"], doc["_id"]["i"]))
        return found - member_keys

    async def rids(self, number: int, after: int, limit: int) -> list[int]:
        flt = all_of([await self.section_filter(number), {"rid": {"$gt": after}}])
        cursor = self.resources.find(flt, {"_id": 0, "rid": 1}, sort=[("rid", 1)], limit=limit,
                                     session=self.session)
        return [doc["rid"] async for doc in cursor]

    async def count_matches(self, budget_ms: int | None) -> int:
        total = 0
        for number in (0, 1):
            options: dict[str, Any] = {} if budget_ms is None else {"maxTimeMS": max(1, budget_ms)}
            total += await self.resources.count_documents(await self.section_filter(number), session=self.session,
                                                          **options)
        return total


def _decode(cursor: str) -> tuple[int, int]:
    values, forward = decode_cursor(cursor)
    if (not forward or len(values) != 2 or not all(isinstance(v, int) for v in values)
            or values[0] not in SECTIONS):
        raise InvalidRequest("_cursor does not belong to this operation", expression="_cursor")
    return int(values[0]), int(values[1])


async def everything_page(resources: Coll, session: AsyncClientSession | None,
                          request: EverythingRequest) -> SearchPage:
    section, after = _decode(request.cursor) if request.cursor else (0, 0)
    plan = _Plan(resources, session, request)
    keys: list[tuple[int, int]] = []
    if request.count > 0:
        want = request.count + 1  # one more than the page: is there a next page?
        for number in SECTIONS[section:]:
            start = after if number == section else 0
            keys.extend((number, rid) for rid in await plan.rids(number, start, want - len(keys)))
            if len(keys) >= want:
                break
    more = len(keys) > request.count
    keys = keys[: request.count]
    versions = {}
    if keys:
        cursor = resources.find({"rid": {"$in": [rid for _, rid in keys]}, "del": False}, PAGE_FIELDS,
                                session=session)
        docs = [doc async for doc in cursor]
        versions = dict(zip([d["rid"] for d in docs], await stored_versions(resources, docs, session), strict=True))
    total = None
    if request.total:
        try:
            total = await plan.count_matches(request.total_budget_ms)
        except ExecutionTimeout:
            total = None
    matches = [versions[rid] for number, rid in keys if number < 2 and rid in versions]
    included = [versions[rid] for number, rid in keys if number == 2 and rid in versions]
    next_cursor = encode_cursor(list(keys[-1]), True) if more and keys else None
    return SearchPage(matches, included, total, next_cursor, None)

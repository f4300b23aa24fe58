"""The repository interface every storage backend implements.

Reads are plain look-ups.  Every write goes through :meth:`Repository.write`, which applies a list of
:class:`WriteOp` atomically: all of them commit, or none.  Conditional interactions and version checks are data
on the op (``if_none_exist``, ``match``, ``if_match``); the rules that decide what a conditional op does once the
backend has found the matches live once, in :mod:`fhir_server.storage.preconditions`, and every backend calls them
inside its transaction, so a check and the write it guards can never be separated by another writer.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.errors import Conflict, FhirError
from fhir_server.indexing.entries import IndexEntries, TokenEntry
from fhir_server.search.model import SearchQuery

__all__ = [
    "EverythingRequest",
    "HistoryEntry",
    "HistoryPage",
    "HistoryQuery",
    "IncludeSpec",
    "IndexEntries",
    "Method",
    "NewResource",
    "Repository",
    "SearchPage",
    "SearchRequest",
    "SharedIndex",
    "StoredVersion",
    "TokenEntry",
    "WriteOp",
    "WriteOutcome",
]

Method = Literal["create", "update", "delete"]
OpMethod = Literal["create", "update", "delete", "reindex"]


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as stored: the JSON body includes ``meta.versionId`` and ``meta.lastUpdated``."""

    resource_type: str
    id: str
    version: int
    last_updated: str  # FHIR instant, UTC, fixed width (sorts as text)
    method: Method
    body: bytes | None  # None for a delete

    @property
    def deleted(self) -> bool:
        return self.method == "delete"


@dataclass
class WriteOp:
    """One planned write.

    * ``create``: ``id`` is the server-assigned id; with ``if_none_exist`` the op becomes a no-op that reports the
      single existing match (several matches → 412).
    * ``update``: either ``id`` or ``match`` (conditional update) is set; ``if_match`` is the expected current version.
      ``create_id`` is the id to use when a conditional update matches nothing and the body carries no id.
    * ``delete``: either ``id`` or ``match`` (conditional delete).
    * ``reindex``: replace the index entries of the current version ``if_match`` of ``id`` (no new version;
      nothing happens if the resource has moved on or been deleted meanwhile).

    ``expect_resolved``: the caller resolved this op before planning it (a Bundle maps references to the target
    of a conditional op, a patch is computed from one version), and ``expect_id`` is what it found — the existing
    match of an ``if_none_exist`` create (None: no match), the target of a conditional update or delete, the id of
    a patched resource.  If the backend resolves differently inside its transaction, or the ``if_match`` version
    of such an op is no longer current, it raises ``ConcurrentChange`` (the plan is stale; retrying is safe).

    When one op of a write fails, the backend sets ``op_index`` on the ``FhirError`` it raises.

    ``implied``: a write the server makes as the consequence of the other ops of the same write (the Slot that
    booking an Appointment takes).  Backends treat it like any op; the scoped repository does not check it against
    the caller's token (the ops it follows from are checked) and refuses a write made only of implied ops.
    """

    method: OpMethod
    resource_type: str
    id: str | None = None
    resource: dict[str, Any] | None = None
    index: IndexEntries | None = None
    if_match: int | None = None
    if_none_exist: SearchQuery | None = None
    match: SearchQuery | None = None
    create_id: str | None = None
    expect_resolved: bool = False
    expect_id: str | None = None
    implied: bool = False


@dataclass(frozen=True, eq=False)
class SharedIndex:
    """Index entries that many resources of a :meth:`Repository.create_many` have in common (the AuditEvents of
    one client: type, subtype, agents …), extracted once.  Equal ``key`` means equal ``entries``: a backend may
    keep what it derives from them (SQLite: the rows, parameter ids resolved) under the key."""

    key: bytes
    entries: IndexEntries


@dataclass(frozen=True)
class NewResource:
    """One resource of a :meth:`Repository.create_many`: its index entries are ``index`` plus, when set, those
    of ``shared`` (stored for it exactly as if ``index`` held them all; the full-text fields come from
    ``index``)."""

    id: str
    resource: dict[str, Any]
    index: IndexEntries
    shared: SharedIndex | None = None

    def entries(self) -> IndexEntries:
        """``index`` and ``shared`` in one (what :meth:`Repository.write` would be given)."""
        if self.shared is None:
            return self.index
        own, common = self.index, self.shared.entries
        return IndexEntries(
            common.strings + own.strings, common.tokens + own.tokens, common.dates + own.dates,
            common.numbers + own.numbers, common.quantities + own.quantities, common.references + own.references,
            common.uris + own.uris, common.composites + own.composites,
            own.narrative, own.content)


@dataclass(frozen=True)
class WriteOutcome:
    """What one op did: ``status`` is the HTTP status it maps to (200 updated/existing, 201 created, 204 deleted)."""

    status: int
    resource_type: str
    id: str | None
    version: StoredVersion | None  # the new (or, for a matched if-none-exist create, the existing) version
    created: bool = False
    noop: bool = False  # nothing was written (existing match, delete of nothing)


@dataclass(frozen=True)
class HistoryQuery:
    resource_type: str | None = None
    id: str | None = None
    since: str | None = None  # instant lower bound, inclusive
    at_start: str | None = None  # versions current at some moment of [at_start, at_end)
    at_end: str | None = None
    count: int = 50
    before_seq: int | None = None  # paging cursor: versions with seq < before_seq (newest first)
    after_seq: int | None = None  # paging cursor backwards: versions with seq > after_seq
    total: bool = True  # False: HistoryPage.total is None, not counted (a change feed polling after_seq)


@dataclass(frozen=True)
class HistoryEntry:
    seq: int
    version: StoredVersion


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    total: int | None  # None: not known (a history filtered by the scoped repository)
    has_newer: bool
    has_older: bool


@dataclass(frozen=True)
class IncludeSpec:
    """One resolved ``_include``/``_revinclude``: the source type and the reference parameter codes."""

    source_type: str
    params: tuple[str, ...]
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass(frozen=True)
class SearchRequest:
    query: SearchQuery
    count: int
    cursor: str | None = None  # an opaque cursor this backend issued (next/previous page)
    total: bool = True  # count all matches
    total_budget_ms: int | None = None  # give up counting (total None) after this long; None: always count
    includes: tuple[IncludeSpec, ...] = ()


@dataclass
class SearchPage:
    matches: list[StoredVersion]
    included: list[StoredVersion]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None


@dataclass(frozen=True)
class EverythingRequest:
    """One page of everything in a compartment (``Patient/[id]/$everything``).

    The service decides the FHIR rules (which parameters link a resource to a compartment, which dates are care
    dates); the backend answers them with a few index queries per page.  The result has three parts, in this
    order, each in a stable order of its own, paged by one opaque ``cursor``:

    1. the compartment resource (``compartment_id`` set) or every resource of ``compartment_type`` (None, the
       type level ``Patient/$everything``) — matches;
    2. the members: resources of a ``links`` type with a reference, through one of its parameters, to the
       compartment resource (type level: to any resource of ``compartment_type``) — matches;
    3. the resources that the compartment resource or a member references through a ``follow`` parameter and
       that are in no compartment of the type: not of ``compartment_type``, and without a ``links`` reference to
       any resource of that type (a Practitioner, a Medication; not another patient's Encounter) — includes.

    ``care_dates`` names a date parameter per member type; with ``care_start``/``care_end`` (epoch seconds,
    the range ``[care_start, care_end)``) a member whose value lies wholly outside the range is left out (and not
    followed); a member without a value stays.  ``since`` (a fixed-width instant, inclusive, compared with
    ``meta.lastUpdated``) and ``types`` filter the entries returned, not what is followed.  ``total`` asks for the
    number of matches (parts 1 and 2), within ``total_budget_ms`` when set (None when it would take longer).
    """

    compartment_type: str
    compartment_id: str | None
    links: Mapping[str, tuple[str, ...]]
    follow: Mapping[str, tuple[str, ...]]
    care_dates: Mapping[str, str] = field(default_factory=dict)
    care_start: float | None = None
    care_end: float | None = None
    since: str | None = None
    types: frozenset[str] | None = None
    count: int = 50
    cursor: str | None = None
    total: bool = True
    total_budget_ms: int | None = None


class Repository(abc.ABC):
    """Storage primitives; everything above them is backend-independent."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def read(self, resource_type: str, id: str) -> StoredVersion | None:
        """The current version (a delete version when deleted), or None if the resource never existed."""

    @abc.abstractmethod
    async def vread(self, resource_type: str, id: str, version: int) -> StoredVersion | None: ...

    @abc.abstractmethod
    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    @abc.abstractmethod
    async def find(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Ids of current, non-deleted resources matching the query (at most ``limit``)."""

    async def find_many(self, queries: Sequence[tuple[SearchQuery, int]]) -> list[list[str]]:
        """:meth:`find` for several ``(query, limit)`` at once, answers in order (a backend may answer them in
        one round trip: a transaction's conditional look-ups)."""
        return [await self.find(query, limit) for query, limit in queries]

    @abc.abstractmethod
    async def search(self, request: SearchRequest) -> SearchPage:
        """One page of matches (current, non-deleted versions), in the query's sort order, with includes."""

    @abc.abstractmethod
    async def everything(self, request: EverythingRequest) -> SearchPage:
        """One page of everything in a compartment (see :class:`EverythingRequest`); no previous cursor."""

    @abc.abstractmethod
    async def count_matches(self, query: SearchQuery) -> int: ...

    @abc.abstractmethod
    async def write(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        """Apply all ops atomically, in order, and durably commit them before returning."""

    async def create_many(self, resource_type: str, items: Sequence[NewResource]) -> list[bool]:
        """Create, in one atomic write, every item whose id is not in the store yet (nor earlier in ``items``),
        with that id (set in the body);
        answers per item whether it was created (False: the id existed, nothing was written for it).  For
        server-made resources written in bulk (the audit trail): no conditions, no versions to check.  A backend
        may store a batch with a few statements instead of one write op per resource; this default makes it
        create ops of :meth:`write` (MongoDB uses it).  A refusal other than an existing id raises the
        ``FhirError`` with ``op_index`` the position in ``items``, and nothing is written."""
        created = [False] * len(items)
        seen: set[str] = set()
        todo: list[int] = []
        for n, item in enumerate(items):
            if item.id not in seen:
                seen.add(item.id)
                todo.append(n)
        while todo:
            ops = [WriteOp("create", resource_type, id=items[n].id, resource={**items[n].resource, "id": items[n].id},
                           index=items[n].entries()) for n in todo]
            try:
                await self.write(ops)
            except FhirError as exc:
                if exc.op_index is None:
                    raise
                failed = todo[exc.op_index]
                if not isinstance(exc, Conflict):
                    exc.op_index = failed
                    raise
                todo.remove(failed)  # the id exists: not created, the others are tried again
                continue
            for n in todo:
                created[n] = True
            break
        return created

    @abc.abstractmethod
    async def count(self, resource_type: str | None = None) -> int:
        """Number of current, non-deleted resources (of one type)."""

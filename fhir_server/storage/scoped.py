"""The scoped repository: any backend, seen through one request's access token.

Every primitive asks the request's :class:`~fhir_server.auth.guard.Guard`:

* **read, vread** — the type needs ``r``; the version read (for a deletion, the version before it) must be in
  reach.  Out of reach: a patient gets "not found" (no existence leak), others 403.
* **search, count** — the type needs ``s``; the reach becomes one more criterion, so the store never returns or
  counts what is out of reach.  Chains and ``_has`` are limited the same way inside (403 when they reach into a
  type the token may not read at all).  ``_include``/``_revinclude`` results are checked one by one.  A
  system-level search over types with limited reach is checked entry by entry (and has no total).
* **history** — every version is checked on its own body (a deletion on the version before it): no leak through
  older or deleted versions.  Limited histories are read in pages and filtered; they have no total.
* **$everything** — every entry is checked; limited reach means no total.
* **conditional matching** (``find``, ``if_none_exist``, conditional update/delete) — only what the token may
  see (delete: may delete) can match, so a match never reveals a resource out of reach.
* **writes** — ``c``/``u``/``d`` on the type; the resource as written must be in reach, and so must the current
  version it replaces or deletes.  One op out of reach fails the whole write (a transaction fails whole; the
  error names the entry).  An ``implied`` op (the Slot a booking takes) follows from the other ops of its write
  and is not checked itself; a write of implied ops alone is refused.  A Subscription is stamped with its writer
  and the writer's access before it is checked (:mod:`fhir_server.auth.stamps`).

What was read and written is recorded on the guard for the request's AuditEvents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from fhir_server import jsonio
from fhir_server.auth.guard import Action, Guard
from fhir_server.auth.policy import Reach
from fhir_server.auth.reach import NOTHING
from fhir_server.auth.stamps import stamp
from fhir_server.errors import FhirError, Forbidden
from fhir_server.search.model import Criterion, SearchQuery
from fhir_server.storage.base import (
    EverythingRequest,
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    Repository,
    SearchPage,
    SearchRequest,
    StoredVersion,
    WriteOp,
    WriteOutcome,
)

_SCAN = 200  # versions read per step when a history must be filtered


class ScopedRepository(Repository):
    def __init__(self, inner: Repository, guard: Guard, resource_types: tuple[str, ...]) -> None:
        self.inner = inner
        self.guard = guard
        self.resource_types = resource_types  # sorted

    async def open(self) -> None:  # the backend is opened and closed by the application
        return None

    async def close(self) -> None:
        return None

    # -- reads ----------------------------------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredVersion | None:
        reach = self.guard.require("r", resource_type)
        stored = await self.inner.read(resource_type, id)
        if stored is None:
            return None
        if not reach.unrestricted:
            body = await self._anchor(stored)
            if not await self.guard.admits(resource_type, body, reach):
                self._refuse(resource_type, id, body, "r")
                return None
        self.guard.touch(resource_type, id, stored.body or await self._anchor(stored), "R")
        return stored

    async def vread(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        reach = self.guard.require("r", resource_type)
        stored = await self.inner.vread(resource_type, id, version)
        if stored is None:
            return None
        if not reach.unrestricted:
            body = await self._anchor(stored)
            if not await self.guard.admits(resource_type, body, reach):
                self._refuse(resource_type, id, body, "r", f"{resource_type}/{id}/_history/{version}")
                return None
        self.guard.touch(resource_type, id, stored.body or await self._anchor(stored), "R")
        return stored

    def _refuse(self, resource_type: str, id: str, body: dict[str, Any], permission: str,
                what: str = "") -> None:
        """Record the refusal; raise 403, or return for the caller to answer as if nothing were there."""
        error = self.guard.out_of_reach(resource_type, id, body, permission, what)
        if error is not None:
            raise error

    async def _anchor(self, stored: StoredVersion) -> dict[str, Any]:
        """The body that decides who may see a version: its own, or for a deletion the last one before it."""
        if stored.body is not None:
            body: dict[str, Any] = jsonio.loads(stored.body)
            return body
        for version in range(stored.version - 1, 0, -1):
            earlier = await self.inner.vread(stored.resource_type, stored.id, version)
            if earlier is not None and earlier.body is not None:
                found: dict[str, Any] = jsonio.loads(earlier.body)
                return found
        return {"resourceType": stored.resource_type, "id": stored.id}

    async def _visible(self, version: StoredVersion) -> bool:
        reach = self.guard.visible(version.resource_type)
        if not reach.allowed:
            return False
        return reach.unrestricted or await self.guard.admits(version.resource_type, await self._anchor(version),
                                                             reach)

    # -- history --------------------------------------------------------------------------------------------------

    async def history(self, query: HistoryQuery) -> HistoryPage:
        rtype = query.resource_type
        if rtype is not None and query.id is not None:
            reach = self.guard.require("r", rtype)
            if not reach.unrestricted:
                current = await self.inner.read(rtype, query.id)
                if current is not None:
                    body = await self._anchor(current)
                    if not await self.guard.admits(rtype, body, reach):
                        self._refuse(rtype, query.id, body, "r", f"the history of {rtype}/{query.id}")
                        return HistoryPage([], 0, False, False)
            check = self._version_check({rtype: reach})
        elif rtype is not None:
            check = self._version_check({rtype: self.guard.require("s", rtype)})
        else:
            reaches = {t: self.guard.reach("s", t) for t in self.resource_types}
            if not any(r.allowed for r in reaches.values()):
                self.guard.require("s", "Resource", expression="_history")
            check = self._version_check(reaches)
        if check is None:
            page = await self.inner.history(query)
        else:
            page = await self._filtered_history(query, check)
        for entry in page.entries:
            self.guard.touch(entry.version.resource_type, entry.version.id, entry.version.body, "R")
        return page

    def _version_check(self, reaches: dict[str, Reach]) -> Callable[[StoredVersion], Awaitable[bool]] | None:
        if all(r.unrestricted for r in reaches.values()):
            return None

        async def check(version: StoredVersion) -> bool:
            reach = reaches.get(version.resource_type)
            if reach is None or not reach.allowed:
                return False
            return reach.unrestricted or await self.guard.admits(version.resource_type,
                                                                 await self._anchor(version), reach)

        return check

    async def _filtered_history(self, query: HistoryQuery,
                                check: Callable[[StoredVersion], Awaitable[bool]]) -> HistoryPage:
        """One page of the versions that pass ``check``: the store's history read in steps and filtered.  The
        total is unknown (counting would mean reading every version)."""
        want = query.count
        backwards = query.after_seq is not None  # a "previous" page: the versions just newer than the cursor
        before, after = query.before_seq, query.after_seq
        kept: list[HistoryEntry] = []
        beyond = False  # whether versions remain past the last one kept
        page = await self.inner.history(replace(query, count=max(_SCAN, want)))
        other_side = page.has_older if backwards else page.has_newer
        while True:
            entries = list(reversed(page.entries)) if backwards else page.entries  # nearest the cursor first
            more = page.has_newer if backwards else page.has_older
            for entry in entries:
                if len(kept) == want:
                    beyond = True
                    break
                if await check(entry.version):
                    kept.append(entry)
            else:
                if len(kept) < want and more and entries:
                    if backwards:
                        after = entries[-1].seq
                    else:
                        before = entries[-1].seq
                    page = await self.inner.history(replace(query, count=max(_SCAN, want), before_seq=before,
                                                            after_seq=after))
                    continue
                beyond = more
            break
        if backwards:
            kept.reverse()
            return HistoryPage(kept, None, beyond, other_side)
        return HistoryPage(kept, None, other_side, beyond)

    # -- search ---------------------------------------------------------------------------------------------------

    def _limit(self, query: SearchQuery, permission: str = "s") -> tuple[SearchQuery, bool]:
        """The query limited to the reach; and whether its results still need checking one by one."""
        criteria = self.guard.guard_criteria(query.criteria)
        if query.resource_type is not None:
            reach = self.guard.require(permission, query.resource_type)
            extra = self.guard.criterion(query.resource_type, reach)
            if extra is not None:
                criteria = (*criteria, extra)
            return replace(query, criteria=criteria), False
        types = query.types or self.resource_types
        reaches = {t: self.guard.reach(permission, t) for t in types}
        denied = [t for t, r in reaches.items() if not r.allowed]
        if query.types and denied:
            self.guard.require(permission, denied[0], expression="_type")
        allowed = tuple(t for t in types if reaches[t].allowed)
        if not allowed:
            self.guard.require(permission, "Resource", expression="_type")
        limited = any(not reaches[t].unrestricted for t in allowed)
        if not query.types and len(allowed) == len(types) and not limited:
            allowed = ()  # every type, unrestricted: the search stays a search of every type
        return replace(query, criteria=criteria, types=allowed), limited

    async def search(self, request: SearchRequest) -> SearchPage:
        query, check_each = self._limit(request.query)
        page = await self.inner.search(replace(request, query=query))
        if check_each:
            page.matches = [v for v in page.matches if await self._visible(v)]
            page.total = None
        page.included = [v for v in page.included if await self._visible(v)]
        for version in (*page.matches, *page.included):
            self.guard.touch(version.resource_type, version.id, version.body, "R")
        return page

    async def count_matches(self, query: SearchQuery) -> int:
        limited, check_each = self._limit(query)
        if not check_each:
            return await self.inner.count_matches(limited)
        total = 0
        for rtype in limited.types:
            reach = self.guard.reach("s", rtype)
            extra = self.guard.criterion(rtype, reach)
            criteria = limited.criteria if extra is None else (*limited.criteria, extra)
            total += await self.inner.count_matches(SearchQuery(rtype, criteria))
        return total

    async def find(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Conditional matching: only what the token may see can match."""
        visible = self._visible_query(query)
        return [] if visible is None else await self.inner.find(visible, limit)

    async def find_many(self, queries: Sequence[tuple[SearchQuery, int]]) -> list[list[str]]:
        visible = [(self._visible_query(query), limit) for query, limit in queries]
        found = iter(await self.inner.find_many([(q, limit) for q, limit in visible if q is not None]))
        return [[] if q is None else next(found) for q, _ in visible]

    def _visible_query(self, query: SearchQuery) -> SearchQuery | None:
        """The query limited to what the token may see (None: it may see nothing of the type)."""
        assert query.resource_type is not None
        reach = self.guard.visible(query.resource_type)
        if not reach.allowed:
            return None
        criteria = self.guard.guard_criteria(query.criteria)
        extra = self.guard.criterion(query.resource_type, reach)
        return _with_criteria(query, criteria if extra is None else (*criteria, extra))

    async def everything(self, request: EverythingRequest) -> SearchPage:
        self.guard.require("s" if request.compartment_id is None else "r", request.compartment_type)
        page = await self.inner.everything(request)
        types = {v.resource_type for v in (*page.matches, *page.included)}
        if not all(self.guard.visible(t).unrestricted for t in types | set(request.links)):
            page.total = None
        page.matches = [v for v in page.matches if await self._visible(v)]
        page.included = [v for v in page.included if await self._visible(v)]
        for version in (*page.matches, *page.included):
            self.guard.touch(version.resource_type, version.id, version.body, "R")
        return page

    async def count(self, resource_type: str | None = None) -> int:
        if resource_type is None:
            return sum([await self.count(t) for t in self.resource_types if self.guard.reach("s", t).allowed])
        reach = self.guard.require("s", resource_type)
        extra = self.guard.criterion(resource_type, reach)
        if extra is None:
            return await self.inner.count(resource_type)
        return await self.inner.count_matches(SearchQuery(resource_type, (extra,)))

    # -- writes ---------------------------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        if ops and all(op.implied for op in ops):
            raise Forbidden("a write of implied ops only has nothing the access token allows it by",
                            expression=ops[0].resource_type)
        checked: list[tuple[WriteOp, dict[str, Any] | None]] = []
        hidden: dict[int, WriteOutcome] = {}  # deletes of what a patient may not know exists: as of the unknown
        matches = await self._update_matches(ops)
        for index, op in enumerate(ops):
            op = stamp(op, self.guard.policy, self.guard.compiler.indexer)  # who wrote it (Subscriptions)
            try:
                checked.append((op, None) if op.implied else await self._check(op, matches.get(index)))
            except _AsUnknown:
                hidden[index] = WriteOutcome(204, op.resource_type, op.id, None, noop=True)
            except FhirError as exc:
                exc.op_index = index
                raise
        written = iter(await self.inner.write([op for op, _ in checked]) if checked else [])
        outcomes = [hidden[i] if i in hidden else next(written) for i in range(len(ops))]
        for (op, before), outcome in zip(checked, [o for i, o in enumerate(outcomes) if i not in hidden],
                                         strict=True):
            if outcome.id is None or (outcome.noop and op.method == "delete"):
                continue
            action: Action = "D" if op.method == "delete" else "C" if outcome.created else \
                "R" if outcome.noop else "U"
            body: bytes | dict[str, Any] | None = before if op.method == "delete" else op.resource
            if outcome.noop and outcome.version is not None:
                body = outcome.version.body  # the existing match of a conditional create
            self.guard.touch(outcome.resource_type, outcome.id, body, action)
        return outcomes

    async def _update_matches(self, ops: Sequence[WriteOp]) -> dict[int, list[str]]:
        """The visible matches of the conditional updates among ``ops``, looked up in one round trip."""
        wanted = [(index, self._limited_query(op.match, self.guard.visible)) for index, op in enumerate(ops)
                  if op.method == "update" and op.match is not None and not op.implied
                  and not self._writes_freely(op)]
        if not wanted:
            return {}
        found = await self.inner.find_many([(query, 2) for _, query in wanted])
        return {index: ids for (index, _), ids in zip(wanted, found, strict=True)}

    async def _check(self, op: WriteOp, matches: list[str] | None = None) -> tuple[WriteOp, dict[str, Any] | None]:
        """The op as it may run (matches limited, version pinned) and, for a delete, the body it removes.
        ``matches``: those of a conditional update's limited criteria, when already looked up."""
        if op.method == "reindex":
            raise Forbidden("reindexing is internal to the server", expression=op.resource_type)
        if op.method == "create":
            return await self._check_create(op), None
        if op.method == "update":
            return await self._check_update(op, matches), None
        return await self._check_delete(op)

    async def _require_admits(self, permission: str, rtype: str, resource: dict[str, Any], what: str) -> None:
        reach = self.guard.require(permission, rtype)
        if not await self.guard.admits(rtype, resource, reach):
            self.guard.out_of_reach(rtype, str(resource.get("id", "")), resource, permission)
            raise Forbidden(f"this access token does not allow {what} this {rtype}: it would be outside what the "
                            "token may write (another patient's record, or a type or category it does not cover)",
                            expression=rtype)

    async def _check_create(self, op: WriteOp) -> WriteOp:
        assert op.resource is not None
        await self._require_admits("c", op.resource_type, op.resource, "creating")
        if op.if_none_exist is not None:
            limited = self._limited_query(op.if_none_exist, self.guard.visible)
            if limited is not op.if_none_exist:
                op = replace(op, if_none_exist=limited)
        return op

    def _limited_query(self, query: SearchQuery, reach_of: Callable[[str], Reach]) -> SearchQuery:
        assert query.resource_type is not None
        reach = reach_of(query.resource_type)
        criteria = self.guard.guard_criteria(query.criteria)
        if not reach.allowed:
            return replace(query, criteria=(*criteria, NOTHING))
        extra = self.guard.criterion(query.resource_type, reach)
        return _with_criteria(query, criteria if extra is None else (*criteria, extra))

    def _writes_freely(self, op: WriteOp) -> bool:
        """Whether an update of the type is in reach whatever it matches, replaces or writes (a system identity
        with ``*.cruds``): then nothing needs looking up or pinning before the write — the store resolves the
        match inside its transaction, as without authorization."""
        rtype = op.resource_type
        return not self.guard.policy.hides_existence and self.guard.visible(rtype).unrestricted and \
            self.guard.reach("u", rtype).unrestricted and self.guard.reach("c", rtype).unrestricted

    async def _check_update(self, op: WriteOp, matches: list[str] | None = None) -> WriteOp:
        resource = op.resource
        assert resource is not None
        rtype = op.resource_type
        target = op.id
        if self._writes_freely(op):
            limited = None if op.match is None else self._limited_query(op.match, self.guard.visible)
            return op if limited is op.match else replace(op, match=limited)
        if op.match is not None:
            op = replace(op, match=self._limited_query(op.match, self.guard.visible))
            assert op.match is not None
            if matches is None:
                matches = await self.inner.find(op.match, limit=2)
            target = matches[0] if len(matches) == 1 else None  # none: a create; several: the store answers 412
            if target is not None and not op.expect_resolved:
                op.expect_resolved, op.expect_id = True, target
        current = await self.inner.read(rtype, target) if target is not None else None
        if current is None or current.deleted:
            if op.match is None and self.guard.policy.hides_existence:
                # a PUT that would create: answered as a PUT to another patient's resource is, or the answer
                # would tell which ids exist in other records
                raise Forbidden(_HIDDEN_UPDATE, expression=rtype)
            await self._require_admits("c", rtype, resource, "creating")
            if current is not None:  # a deleted resource comes back: its last owner must be in reach too
                await self._require_current("c", current)
            return op
        await self._require_current("u", current)
        await self._require_admits("u", rtype, resource, "updating")
        return self._pinned(op, current, "u")

    async def _require_current(self, permission: str, current: StoredVersion) -> None:
        """The version a write replaces (for a deletion, the one before it) must be in reach."""
        reach = self.guard.require(permission, current.resource_type)
        if reach.unrestricted:
            return
        body = await self._anchor(current)
        if await self.guard.admits(current.resource_type, body, reach):
            return
        error = self.guard.out_of_reach(current.resource_type, current.id, body, permission)
        if error is None and permission == "d":
            raise _AsUnknown
        if error is None and permission == "u":
            raise Forbidden(_HIDDEN_UPDATE, expression=current.resource_type)
        raise error or Forbidden(f"this access token does not allow writing {current.resource_type}/{current.id}",
                                 expression=current.resource_type)

    def _pinned(self, op: WriteOp, current: StoredVersion, permission: str) -> WriteOp:
        """Apply the write only to the version that was checked (a concurrent change answers 409, and a
        transaction plans again)."""
        if self.guard.reach(permission, op.resource_type).unrestricted or op.if_match is not None:
            return op
        return replace(op, if_match=current.version, expect_resolved=True, expect_id=current.id)

    async def _check_delete(self, op: WriteOp) -> tuple[WriteOp, dict[str, Any] | None]:
        rtype = op.resource_type
        if op.match is not None:
            self.guard.require("d", rtype)
            op = replace(op, match=self._limited_query(op.match, lambda t: self.guard.reach("d", t)))
            assert op.match is not None
            matches = await self.inner.find(op.match, limit=2)
            current = await self.inner.read(rtype, matches[0]) if len(matches) == 1 else None
            return op, _body(current)
        assert op.id is not None
        current = await self.inner.read(rtype, op.id)
        if current is None:
            self.guard.require("d", rtype)
            return op, None
        if current.deleted:
            await self._require_current("d", current)  # nobody learns about another patient's deleted resource
            return op, None
        await self._require_current("d", current)
        return self._pinned(op, current, "d"), _body(current)


_HIDDEN_UPDATE = ("a patient's access token updates only resources it can read, and does not create them with a "
                  "chosen id: create new resources with POST (the server chooses the id)")


class _AsUnknown(Exception):
    """A delete of a resource the caller may not know exists: answered as the delete of an unknown one (204,
    nothing written)."""


def _with_criteria(query: SearchQuery, criteria: tuple[Criterion, ...]) -> SearchQuery:
    """The query with these criteria: the same object when they are the same (no copy per look-up)."""
    if len(criteria) == len(query.criteria) and all(a is b for a, b in zip(criteria, query.criteria, strict=True)):
        return query
    return replace(query, criteria=criteria)


def _body(version: StoredVersion | None) -> dict[str, Any] | None:
    if version is None or version.body is None:
        return None
    body: dict[str, Any] = jsonio.loads(version.body)
    return body


__all__ = ["ScopedRepository"]

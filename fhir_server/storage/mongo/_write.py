"""Apply write ops on MongoDB (inside a multi-document transaction when the deployment has them).

Collections:

* ``resources`` — one document per resource (``_id`` ``"Type/id"``), its current version: body, version,
  ``lastUpdated``, the deleted flag, and the embedded search index (:mod:`._documents`); ``rid`` is the sequence
  number of its first version (the creation order searches return by default);
* ``history`` — every version ever written (``_id`` its sequence number ``seq``; body, version, method,
  ``lastUpdated``, and ``nlut``, the ``lastUpdated`` of the next version, which answers ``_at``);
* ``body_chunks`` and ``fulltext`` — what does not fit in a document (:mod:`._bodies`, :mod:`._documents`);
* ``conditional_keys`` — one document per conditional-create criteria (``_id`` a hash of the criteria) naming
  the resource version that was created under them (``h``, ``v``).

Sequence numbers order versions by time: microseconds since 2020 (of ``lastUpdated``) times 4096 plus 12 random
bits, which fits a 64-bit integer until 2091 (two versions of the same microsecond collide once in 4096 times:
the ``_id`` index refuses the second, which is retried).  A
resource's versions never go back in time: a new version is at least one microsecond after the one it replaces.

Concurrency: every write to a resource's document is conditional on the version read (``{_id, ver}``); inside a
transaction a concurrent writer makes one of them abort with a transient write conflict, and the whole
transaction is retried.  A conditional create (or a conditional update that creates) claims the key of its
criteria in ``conditional_keys``, unique by ``_id`` (which also holds on a sharded cluster): of two concurrent
identical conditional creates only one claims it, and the other, retried, finds the resource the first created.
A key whose resource no longer matches the criteria (it was updated, deleted, or a chain now leads elsewhere)
is stale and is taken over, conditionally on its old holder, so that two writers cannot both take it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fhir_server import jsonio
from fhir_server.errors import Conflict, FhirError, InvalidRequest
from fhir_server.search.model import SearchQuery
from fhir_server.storage import preconditions
from fhir_server.storage._meta import MonotonicClock, format_instant, with_meta
from fhir_server.storage.base import IndexEntries, Method, StoredVersion, WriteOp, WriteOutcome
from fhir_server.storage.mongo._bodies import CHUNKS, body_fields, version
from fhir_server.storage.mongo._compile import Compiler, all_of, key
from fhir_server.storage.mongo._documents import index_fields
from fhir_server.storage.mongo._search import find_ids, match_filter

CURRENT_FIELDS = {"ix": 0, "srt": 0, "ft": 0}
FULLTEXT = "fulltext"
CLAIM_GRACE_S = 10.0  # without transactions: how long a claim whose version is not written yet counts as held
T = TypeVar("T")


class Retry(Exception):
    """The write raced with another writer (a version moved on, a unique key was taken): run it again."""


SEQ_EPOCH_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
SEQ_LOW_BITS = 12


def seq_of(epoch: float, low: int) -> int:
    """The sequence number of a version written at ``epoch`` (seconds), ``low`` telling apart one microsecond's."""
    return max(0, round(epoch * 1_000_000) - SEQ_EPOCH_US) << SEQ_LOW_BITS | (low & ((1 << SEQ_LOW_BITS) - 1))


def make_seq(epoch: float) -> int:
    return seq_of(epoch, random.getrandbits(SEQ_LOW_BITS))


def criteria_key(query: SearchQuery) -> str:
    """A key naming conditional-create criteria, independent of the order the parameters came in."""
    parts = sorted(repr(c) for c in query.criteria)
    text = "\n".join([query.resource_type or "", *parts])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Current:
    doc: dict[str, Any]

    @property
    def stored(self) -> StoredVersion:
        """The version without a large body (enough for version checks; see ``TxWriter._full``)."""
        d = self.doc
        return StoredVersion(d["type"], d["id"], d["ver"], d["lut"], d["m"], d.get("body"))


class TxWriter:
    """Applies ops with one session (a transaction's, or None without transactions)."""

    def __init__(self, resources: AsyncCollection[Any], history: AsyncCollection[Any],
                 conditional: AsyncCollection[Any], clock: MonotonicClock,
                 session: AsyncClientSession | None) -> None:
        self.resources = resources
        self.history = history
        self.conditional = conditional
        self.clock = clock
        self.session = session
        self.chunks = resources.database[CHUNKS]
        self.fulltext = resources.database[FULLTEXT]

    async def apply(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        out = []
        for index, op in enumerate(ops):
            try:
                out.append(await self.apply_one(op))
            except FhirError as exc:
                raise preconditions.mark_failed(exc, index) from None
        return out

    async def apply_one(self, op: WriteOp) -> WriteOutcome:
        if op.method == "create":
            return await self._create(op)
        if op.method == "update":
            return await self._update(op)
        if op.method == "reindex":
            return await self._reindex(op)
        return await self._delete(op)

    # -- reads ----------------------------------------------------------------------------------------------

    async def _current(self, resource_type: str, id: str) -> Current | None:
        """The current document, without its search index."""
        doc = await self.resources.find_one({"_id": key(resource_type, id)}, CURRENT_FIELDS, session=self.session)
        return Current(doc) if doc is not None else None

    async def _full(self, current: Current) -> StoredVersion:
        """The version with its body, however large."""
        return await version(self.resources, current.doc, self.session)

    async def _find(self, query: SearchQuery) -> list[str]:
        return await find_ids(self.resources, self.session, query, 2)

    # -- ops ------------------------------------------------------------------------------------------------

    async def _reindex(self, op: WriteOp) -> WriteOutcome:
        assert op.id is not None and op.index is not None
        current = await self._current(op.resource_type, op.id)
        if current is None or current.stored.deleted or current.stored.version != op.if_match:
            return WriteOutcome(200, op.resource_type, op.id, None, noop=True)
        fields, parts = index_fields(op.index)
        gone = {name: "" for name in ("ft", "ftx") if name not in fields}
        rkey = key(op.resource_type, op.id)
        result = await self.resources.update_one(
            {"_id": rkey, "ver": op.if_match, "del": False},
            {"$set": fields, **({"$unset": gone} if gone else {})}, session=self.session)
        if result.matched_count == 0:
            return WriteOutcome(200, op.resource_type, op.id, None, noop=True)
        await self._side_text(rkey, op.resource_type, current, parts)
        return WriteOutcome(200, op.resource_type, op.id, await self._full(current))

    async def _create(self, op: WriteOp) -> WriteOutcome:
        if op.if_none_exist is not None:
            existing_id = preconditions.create_target(op, await self._find(op.if_none_exist))
            preconditions.check_expected(op, existing_id)
            if existing_id is not None:
                current = await self._current(op.resource_type, existing_id)
                assert current is not None
                return WriteOutcome(200, op.resource_type, existing_id, await self._full(current), noop=True)
        assert op.id is not None and op.resource is not None
        if await self._current(op.resource_type, op.id) is not None:
            raise Conflict(f"{op.resource_type}/{op.id} already exists")
        claimed = None
        if op.if_none_exist is not None:
            claimed = await self._claim(op.if_none_exist, key(op.resource_type, op.id), 1)
        stored = await self._guarded(claimed, self._write(op, op.id, None, op.resource, op.index))
        return WriteOutcome(201, op.resource_type, op.id, stored, created=True)

    async def _update(self, op: WriteOp) -> WriteOutcome:
        id = op.id
        claim = None
        if op.match is not None:
            matches = await self._find(op.match)
            id = preconditions.update_target(op, matches)
            preconditions.check_expected(op, id)
            if not matches:
                claim = op.match
        if id is None or op.resource is None:
            raise InvalidRequest("update needs an id or search criteria and a resource")
        current = await self._current(op.resource_type, id)
        op.id = id
        stored_current = current.stored if current else None
        preconditions.check_expected_version(op, stored_current)
        preconditions.check_version(op, stored_current)
        created = current is None or current.stored.deleted
        resource = op.resource if op.resource.get("id") == id else {**op.resource, "id": id}
        claimed = None
        if claim is not None:
            claimed = await self._claim(claim, key(op.resource_type, id), current.stored.version + 1 if current else 1)
        stored = await self._guarded(claimed, self._write(op, id, current, resource, op.index))
        return WriteOutcome(201 if created else 200, op.resource_type, id, stored, created=created)

    async def _delete(self, op: WriteOp) -> WriteOutcome:
        id = op.id
        if op.match is not None:
            id = preconditions.delete_target(op, await self._find(op.match))
            preconditions.check_expected(op, id)
            if id is None:
                return WriteOutcome(204, op.resource_type, None, None, noop=True)
        assert id is not None
        current = await self._current(op.resource_type, id)
        op.id = id
        preconditions.check_version(op, current.stored if current else None)
        if current is None or current.stored.deleted:
            return WriteOutcome(204, op.resource_type, id, current.stored if current else None, noop=True)
        stored = await self._write(op, id, current, None, None)
        return WriteOutcome(204, op.resource_type, id, stored)

    # -- the unique key of conditional creates --------------------------------------------------------------

    async def _claim(self, query: SearchQuery, holder: str, version: int) -> dict[str, Any]:
        """Claim the criteria's key for the version about to be written (Retry when another writer has it)."""
        guard = criteria_key(query)
        mine = {"h": holder, "v": version, "t": time.time()}
        existing = await self.conditional.find_one({"_id": guard}, session=self.session)
        if existing is None:
            await self.conditional.insert_one({"_id": guard, **mine}, session=self.session)  # taken: DuplicateKey
        elif await self._holds(existing, query):
            raise Retry  # another writer's resource matches (or is being written): searching again finds it
        else:
            taken = await self.conditional.replace_one(
                {"_id": guard, "h": existing["h"], "v": existing["v"]}, mine, session=self.session)
            if taken.matched_count == 0:
                raise Retry
        return {"_id": guard, **mine}

    async def _holds(self, existing: dict[str, Any], query: SearchQuery) -> bool:
        """The key's holder is the version it was claimed for and still matches the criteria.  Without a
        transaction a claim is visible before its version is written: a fresh claim counts as held."""
        holder = {"_id": existing["h"], "ver": existing["v"], "del": False}
        if await self.resources.find_one(holder, {"_id": 1}, session=self.session) is None:
            return self.session is None and time.time() - existing.get("t", 0) < CLAIM_GRACE_S
        flt = await match_filter(Compiler(self.resources, self.session), query)
        return await self.resources.find_one(all_of([flt, holder]), {"_id": 1}, session=self.session) is not None

    async def _guarded(self, claimed: dict[str, Any] | None, write: Awaitable[T]) -> T:
        """Run the write; without a transaction, a write that fails gives its claim back."""
        try:
            return await write
        except BaseException:
            if claimed is not None and self.session is None:
                await self.conditional.delete_one(claimed)
            raise

    # -- the write --------------------------------------------------------------------------------------------

    async def _write(
        self,
        op: WriteOp,
        id: str,
        current: Current | None,
        resource: dict[str, Any] | None,
        index: IndexEntries | None,
    ) -> StoredVersion:
        number = current.stored.version + 1 if current else 1
        last_updated, epoch = self.clock.now_with_epoch()
        if current is not None and epoch <= current.doc["lu"]:
            epoch = round(current.doc["lu"] + 1e-6, 6)  # another process's clock ran ahead: stay after it
            last_updated = format_instant(epoch)
        method: Method = "delete" if resource is None else "create" if op.method == "create" else "update"
        body = None if resource is None else jsonio.dumps(with_meta(resource, number, last_updated))
        seq = make_seq(epoch)
        stored_body, pieces = body_fields(seq, body)
        doc: dict[str, Any] = {
            "type": op.resource_type, "id": id, "rid": current.doc["rid"] if current else seq, "ver": number,
            "del": resource is None, "seq": seq, "lu": epoch, "lut": last_updated, "m": method, **stored_body,
        }
        parts: list[dict[str, Any]] = []
        if index is not None and resource is not None:
            fields, parts = index_fields(index)
            doc.update(fields)
        rkey = key(op.resource_type, id)
        if pieces:
            await self.chunks.insert_many(pieces, session=self.session)
        await self.history.insert_one(
            {"_id": seq, "type": op.resource_type, "id": id, "ver": number, "lu": epoch, "lut": last_updated,
             "m": method, **stored_body}, session=self.session)
        try:
            if current is None:
                await self.resources.insert_one({"_id": rkey, **doc}, session=self.session)
            else:
                result = await self.resources.replace_one({"_id": rkey, "ver": current.stored.version}, doc,
                                                          session=self.session)
                if result.matched_count == 0:
                    raise Retry
        except (Retry, DuplicateKeyError):
            if self.session is None:  # no transaction to abort: take the version back
                await self.history.delete_one({"_id": seq})
            raise
        if current is not None:
            await self.history.update_one({"type": op.resource_type, "id": id, "ver": current.stored.version},
                                          {"$set": {"nlut": last_updated}}, session=self.session)
        await self._side_text(rkey, op.resource_type, current, parts)
        return StoredVersion(op.resource_type, id, number, last_updated, method, body)

    async def _side_text(self, rkey: str, resource_type: str, current: Current | None,
                         parts: list[dict[str, Any]]) -> None:
        """Replace the full-text parts kept beside the resource's document (large resources only)."""
        if current is not None and current.doc.get("ftx"):
            await self.fulltext.delete_many({"k": rkey}, session=self.session)
        if parts:
            await self.fulltext.insert_many(
                [{"_id": f"{rkey}#{i}", "k": rkey, "type": resource_type, **part} for i, part in enumerate(parts)],
                session=self.session)

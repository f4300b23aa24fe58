"""The MongoDB repository (production backend), on pymongo's native ``AsyncMongoClient``.

* Every write request is one multi-document transaction (snapshot reads, write concern ``majority`` with
  journaling), retried as a whole on transient errors and on the races described in :mod:`._write`.  That needs
  a replica set or a sharded cluster: :meth:`MongoRepository.open` refuses a standalone server.
* Reads use read concern ``majority``; a search reads its page, its total and its includes in one snapshot.
* Retryable reads and writes are on; every default can be overridden in the connection URL.

``transactions=False`` is only for MongoDB-compatible test servers without transactions (see docs/mongodb.md):
each op is then applied on its own, so a failing op does not undo the ops before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import FhirError, ServiceUnavailable
from fhir_server.search.model import SearchQuery
from fhir_server.storage import preconditions
from fhir_server.storage._meta import MonotonicClock
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
from fhir_server.storage.mongo import _search
from fhir_server.storage.mongo._bodies import version as stored_version
from fhir_server.storage.mongo._bodies import versions
from fhir_server.storage.mongo._compile import key
from fhir_server.storage.mongo._everything import everything_page
from fhir_server.storage.mongo._schema import (
    FULLTEXT_INDEXES,
    HISTORY_INDEXES,
    RESOURCE_INDEXES,
    client_options,
)
from fhir_server.storage.mongo._write import Retry, TxWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 20
TRANSACTIONAL_TOPOLOGIES = ("ReplicaSetWithPrimary", "Sharded", "LoadBalanced")
COLLECTIONS = ("resources", "history", "body_chunks", "fulltext", "conditional_keys")


class MongoConfigurationError(RuntimeError):
    """The MongoDB deployment cannot serve this backend (for example a standalone server: no transactions)."""


class MongoRepository(Repository):
    def __init__(self, url: str, *, database: str | None = None, transactions: bool = True,
                 server_selection_timeout_ms: int = 10_000) -> None:
        options, default_db = client_options(url)
        self.url = url
        self.database_name = database or default_db
        self.transactions = transactions
        self._options = {"serverSelectionTimeoutMS": server_selection_timeout_ms, **options}
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._resources: AsyncCollection[dict[str, Any]] | None = None
        self._history: AsyncCollection[dict[str, Any]] | None = None
        self._conditional: AsyncCollection[dict[str, Any]] | None = None
        self._clock = MonotonicClock()

    # -- life cycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.url, **self._options)
        try:
            await client.admin.command("ping")
            topology = client.topology_description.topology_type_name
            if self.transactions and topology not in TRANSACTIONAL_TOPOLOGIES:
                raise MongoConfigurationError(
                    f"the MongoDB backend needs a replica set or a sharded cluster (multi-document transactions); "
                    f"the server at {_hosts(self.url)} is {topology!r}. Start mongod with --replSet and run "
                    "rs.initiate() (a single-node replica set is enough), or connect to the replica set "
                    "(mongodb://host/?replicaSet=NAME)"
                )
            db = client[self.database_name]
            self._resources = db["resources"]
            self._history = db["history"]
            self._conditional = db["conditional_keys"]
            # every collection exists before the first transaction (creating one inside a transaction is not
            # possible everywhere, e.g. in a cross-shard transaction)
            existing = set(await db.list_collection_names())
            for name in COLLECTIONS:
                if name not in existing:
                    with contextlib.suppress(CollectionInvalid):  # another API replica created it meanwhile
                        await db.create_collection(name)
            await self._resources.create_indexes(RESOURCE_INDEXES)
            await self._history.create_indexes(HISTORY_INDEXES)
            await db["fulltext"].create_indexes(FULLTEXT_INDEXES)
        except MongoConfigurationError:
            await client.close()
            raise
        except PyMongoError as exc:
            await client.close()
            raise MongoConfigurationError(f"cannot use MongoDB at {_hosts(self.url)}: {exc}") from exc
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def drop(self) -> None:
        """Remove this repository's database (tests and tools)."""
        if self._client is not None:
            await self._client.drop_database(self.database_name)

    def _colls(self) -> tuple[AsyncCollection[Any], AsyncCollection[Any], AsyncCollection[Any]]:
        if self._resources is None or self._history is None or self._conditional is None:
            raise ServiceUnavailable("the store is closed")
        return self._resources, self._history, self._conditional

    @property
    def resources(self) -> AsyncCollection[dict[str, Any]]:
        return self._colls()[0]

    @property
    def history_collection(self) -> AsyncCollection[dict[str, Any]]:
        return self._colls()[1]

    @asynccontextmanager
    async def _session(self, snapshot: bool) -> AsyncIterator[AsyncClientSession | None]:
        """With ``snapshot`` (and a deployment with transactions) one snapshot for several reads; otherwise plain
        reads (read concern majority)."""
        if not snapshot or not self.transactions or self._client is None:
            yield None
            return
        async with self._client.start_session(snapshot=True) as session:
            yield session

    async def _read(self, fn: Callable[[AsyncClientSession | None], Awaitable[T]], snapshot: bool = False) -> T:
        self._colls()
        try:
            async with self._session(snapshot) as session:
                return await fn(session)
        except PyMongoError as exc:
            log.error("MongoDB read failed: %s", exc)
            raise ServiceUnavailable("the store is unavailable; retry later") from exc

    # -- reads ----------------------------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredVersion | None:
        async def run(session: AsyncClientSession | None) -> StoredVersion | None:
            doc = await self.resources.find_one({"_id": key(resource_type, id)}, _search.PAGE_FIELDS)
            return await stored_version(self.resources, doc, session) if doc is not None else None

        return await self._read(run)

    async def vread(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        async def run(session: AsyncClientSession | None) -> StoredVersion | None:
            doc = await self.history_collection.find_one({"type": resource_type, "id": id, "ver": version})
            return await stored_version(self.history_collection, doc, session, seq_field="_id") if doc else None

        return await self._read(run)

    async def find(self, query: SearchQuery, limit: int = 2) -> list[str]:
        return await self._read(lambda s: _search.find_ids(self.resources, s, query, limit))

    async def search(self, request: SearchRequest) -> SearchPage:
        return await self._read(lambda s: _search.search_page(self.resources, s, request), snapshot=True)

    async def everything(self, request: EverythingRequest) -> SearchPage:
        return await self._read(lambda s: everything_page(self.resources, s, request), snapshot=True)

    async def count_matches(self, query: SearchQuery) -> int:
        return await self._read(lambda s: _search.count_matches(self.resources, s, query), snapshot=True)

    async def count(self, resource_type: str | None = None) -> int:
        flt: dict[str, Any] = {"del": False} if resource_type is None else {"type": resource_type, "del": False}
        return await self._read(lambda s: self.resources.count_documents(flt, session=s))

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._read(lambda s: _history(self.history_collection, s, query), snapshot=True)

    # -- writes ----------------------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        resources, history, conditional = self._colls()
        try:
            if self.transactions:
                return await self._retrying(lambda: self._transaction(ops))
            outcomes = []
            writer = TxWriter(resources, history, conditional, self._clock, None)
            for index, op in enumerate(ops):  # no transactions: each op on its own
                try:
                    outcomes.append(await self._retrying(lambda op=op: writer.apply_one(op)))  # type: ignore[misc]
                except FhirError as exc:
                    raise preconditions.mark_failed(exc, index) from None
            return outcomes
        except FhirError:
            raise
        except PyMongoError as exc:
            log.error("MongoDB write failed: %s", exc)
            raise ServiceUnavailable("the write could not be committed; nothing was stored") from exc

    async def _transaction(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        assert self._client is not None
        resources, history, conditional = self._colls()

        async def body(session: AsyncClientSession) -> list[WriteOutcome]:
            return await TxWriter(resources, history, conditional, self._clock, session).apply(ops)

        async with self._client.start_session() as session:
            return await session.with_transaction(
                body, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority", j=True))

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for number in range(MAX_ATTEMPTS):
            try:
                return await attempt()
            except (Retry, DuplicateKeyError) as exc:
                if number == MAX_ATTEMPTS - 1:
                    log.error("a write kept racing with other writers: %s", exc)
                    raise ServiceUnavailable("the write kept conflicting with concurrent writes; retry") from exc
                await asyncio.sleep(random.uniform(0, 0.002 * (number + 1)))
        raise AssertionError("unreachable")


def _hosts(url: str) -> str:
    """The URL without credentials (for messages)."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]


async def _history(coll: AsyncCollection[Any], session: AsyncClientSession | None, query: HistoryQuery) -> HistoryPage:
    flt: dict[str, Any] = {}
    if query.resource_type is not None:
        flt["type"] = query.resource_type
    if query.id is not None:
        flt["id"] = query.id
    lut: dict[str, str] = {}
    if query.since is not None:
        lut["$gte"] = query.since
    if query.at_end is not None:
        lut["$lt"] = query.at_end
    if lut:
        flt["lut"] = lut
    if query.at_start is not None:
        # still current at at_start: the next version (if any) came after it
        flt["$or"] = [{"nlut": None}, {"nlut": {"$gt": query.at_start}}]
    total = await coll.count_documents(flt, session=session) if query.total else None
    if query.after_seq is not None:
        cursor = coll.find({**flt, "_id": {"$gt": query.after_seq}}, sort=[("_id", 1)], limit=query.count,
                           session=session)
        docs = [d async for d in cursor]
        docs.reverse()
    else:
        page_flt = flt if query.before_seq is None else {**flt, "_id": {"$lt": query.before_seq}}
        cursor = coll.find(page_flt, sort=[("_id", -1)], limit=query.count, session=session)
        docs = [d async for d in cursor]
    stored = await versions(coll, docs, session, seq_field="_id")
    entries = [HistoryEntry(d["_id"], v) for d, v in zip(docs, stored, strict=True)]
    has_newer = has_older = False
    if entries:
        has_newer = await coll.find_one({**flt, "_id": {"$gt": entries[0].seq}}, {"_id": 1},
                                        session=session) is not None
        has_older = await coll.find_one({**flt, "_id": {"$lt": entries[-1].seq}}, {"_id": 1},
                                        session=session) is not None
    return HistoryPage(entries, total, has_newer, has_older)

"""Copy a store to another backend with every version: ``infirmary migrate --from sqlite:PATH --to mongodb://…``.

Every version keeps its id, version number, ``meta.lastUpdated``, method and exact body; deleted resources stay
deleted; the current versions are indexed again for the target (with the store's own active SearchParameters
in force, as the server would at start).  Resources keep their creation order, which is the order searches
return by default.

The source is read through the repository interface (system history, newest first, page by page) into a
spool file, then written to the target oldest first by a backend-specific importer that writes versions as
they are (a normal write would give them new versions and times).  The target must be empty.  Both directions
work: SQLite → MongoDB and MongoDB → SQLite.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fhir_server import jsonio
from fhir_server.definitions import load_definitions
from fhir_server.indexing.extract import Indexer
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.search.registry import SearchRegistry
from fhir_server.services.resources import ResourceService
from fhir_server.services.search_params import SearchParameters
from fhir_server.services.validate import Validator
from fhir_server.settings import Settings
from fhir_server.storage._meta import epoch_of
from fhir_server.storage.base import HistoryQuery, IndexEntries, Repository, StoredVersion
from fhir_server.storage.mongo._bodies import CHUNKS, body_fields
from fhir_server.storage.mongo._compile import key
from fhir_server.storage.mongo._documents import index_fields
from fhir_server.storage.mongo._write import FULLTEXT, seq_of
from fhir_server.storage.mongo.repository import MongoRepository
from fhir_server.storage.sqlite._index_rows import FulltextOp, ParamIds, apply_fulltext, write_rows
from fhir_server.storage.sqlite._schema import connect, initialise
from fhir_server.storage.sqlite.repository import SQLiteRepository

PAGE = 200
BATCH = 500


class MigrationError(RuntimeError):
    """The migration cannot run (an unknown store, a target that is not empty)."""


@dataclass
class Report:
    versions: int = 0
    resources: int = 0
    deleted: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # live resources per type


@dataclass(frozen=True)
class Store:
    kind: str  # "sqlite" | "mongodb"
    location: str  # a file path or a connection URL

    @classmethod
    def parse(cls, spec: str) -> Store:
        if spec.startswith("sqlite:"):
            path = spec[len("sqlite:"):]
            if not path:
                raise MigrationError("sqlite: needs a file path (sqlite:/var/lib/infirmary/infirmary.db)")
            return cls("sqlite", path)
        if spec.startswith(("mongodb://", "mongodb+srv://")):
            return cls("mongodb", spec)
        raise MigrationError(f"unknown store {spec!r}: use sqlite:PATH or a mongodb:// URL")

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:{self.location}"
        rest = self.location.split("://", 1)[1]
        return "mongodb://" + rest.rsplit("@", 1)[-1]  # no credentials in messages

    def repository(self, settings: Settings) -> Repository:
        if self.kind == "sqlite":
            return SQLiteRepository(Path(self.location))
        return MongoRepository(self.location, transactions=settings.storage.mongodb_require_transactions)


class Importer(Protocol):
    async def add(self, version: StoredVersion, first_seq: int, seq: int, next_lut: str | None,
                  index: IndexEntries | None) -> None: ...

    async def flush(self) -> None: ...


# -- the spool: every version, oldest first -------------------------------------------------------------------


class Spool:
    """Versions as read (newest first) in a temporary SQLite file, read back oldest first with what each needs:
    the sequence number of the resource's first version, the next version's time, whether it is current."""

    def __init__(self, directory: str) -> None:
        self.conn = sqlite3.connect(Path(directory) / "spool.db")
        self.conn.execute("CREATE TABLE v (n INTEGER PRIMARY KEY, seq INTEGER, type TEXT, id TEXT, version INTEGER, "
                          "lut TEXT, method TEXT, body BLOB)")
        self.count = 0

    def add(self, version: StoredVersion) -> None:
        self.count += 1
        # newest first: the sequence number grows with time, the counter tells apart versions of one microsecond
        seq = seq_of(epoch_of(version.last_updated), -self.count)
        self.conn.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (self.count, seq, version.resource_type, version.id, version.version,
                           version.last_updated, version.method, version.body))

    def oldest_first(self) -> Iterator[tuple[StoredVersion, int, int, str | None, bool]]:
        rows = self.conn.execute(
            "SELECT type, id, version, lut, method, body, seq, "
            "min(seq) OVER (PARTITION BY type, id), "
            "lead(lut) OVER (PARTITION BY type, id ORDER BY version), "
            "max(version) OVER (PARTITION BY type, id) "
            "FROM v ORDER BY n DESC")
        for rtype, rid_id, version, lut, method, body, seq, first, next_lut, last in rows:
            yield (StoredVersion(rtype, rid_id, version, lut, method, body), first, seq, next_lut,
                   version == last)

    def close(self) -> None:
        self.conn.close()


# -- importers --------------------------------------------------------------------------------------------


class SQLiteImporter:
    """Writes versions as they are into a SQLite store (the schema of :mod:`fhir_server.storage.sqlite`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(path, 10_000)
        initialise(self.conn)
        self.ids = ParamIds()
        self.ids.load(self.conn)
        self.fulltext: list[FulltextOp] = []
        self.pending = 0
        if self.conn.execute("SELECT 1 FROM versions LIMIT 1").fetchone() is not None:
            self.conn.close()
            raise MigrationError(f"the target {path} is not empty")
        self.conn.execute("BEGIN IMMEDIATE")

    async def add(self, version: StoredVersion, first_seq: int, seq: int, next_lut: str | None,
                  index: IndexEntries | None) -> None:
        conn = self.conn
        row = conn.execute("SELECT rid FROM resources WHERE type = ? AND id = ?",
                           (version.resource_type, version.id)).fetchone()
        if row is None:
            cursor = conn.execute("INSERT INTO resources (type, id, version, deleted, current_seq) "
                                  "VALUES (?, ?, ?, ?, 0)", (version.resource_type, version.id, version.version, 0))
            assert cursor.lastrowid is not None
            rid = cursor.lastrowid
        else:
            rid = int(row[0])
        new_seq = conn.execute(
            "INSERT INTO versions (rid, type, version, last_updated, method, body) VALUES (?, ?, ?, ?, ?, ?)",
            (rid, version.resource_type, version.version, version.last_updated, version.method, version.body),
        ).lastrowid
        conn.execute("UPDATE resources SET version = ?, deleted = ?, current_seq = ?, lu = ? WHERE rid = ?",
                     (version.version, int(version.deleted), new_seq, epoch_of(version.last_updated), rid))
        if index is not None:
            write_rows(conn, self.ids, version.resource_type, rid, index, self.fulltext)
        self.pending += 1
        if self.pending >= BATCH:
            await self.flush()
            conn.execute("BEGIN IMMEDIATE")

    async def flush(self) -> None:
        if self.conn.in_transaction:
            apply_fulltext(self.conn, self.fulltext)
            self.fulltext.clear()
            self.conn.execute("COMMIT")
            self.ids.committed()
        self.pending = 0

    def close(self) -> None:
        self.conn.close()


class MongoImporter:
    """Writes versions as they are into a MongoDB store (the documents of :mod:`fhir_server.storage.mongo`)."""

    def __init__(self, repo: MongoRepository) -> None:
        self.repo = repo
        self.history: list[dict[str, Any]] = []
        self.current: list[dict[str, Any]] = []
        self.side: dict[str, list[dict[str, Any]]] = {CHUNKS: [], FULLTEXT: []}

    async def check_empty(self) -> None:
        if await self.repo.history_collection.find_one({}, {"_id": 1}) is not None:
            raise MigrationError(f"the target database {self.repo.database_name!r} is not empty")

    async def add(self, version: StoredVersion, first_seq: int, seq: int, next_lut: str | None,
                  index: IndexEntries | None) -> None:
        body, pieces = body_fields(seq, version.body)
        self.side[CHUNKS].extend(pieces)
        doc: dict[str, Any] = {"_id": seq, "type": version.resource_type, "id": version.id, "ver": version.version,
                               "lu": epoch_of(version.last_updated), "lut": version.last_updated,
                               "m": version.method, **body}
        if next_lut is not None:
            doc["nlut"] = next_lut
        self.history.append(doc)
        if next_lut is None:  # the current version
            rkey = key(version.resource_type, version.id)
            current = {"_id": rkey, "type": version.resource_type, "id": version.id, "rid": first_seq,
                       "ver": version.version, "del": version.deleted, "seq": seq, "lu": doc["lu"],
                       "lut": version.last_updated, "m": version.method, **body}
            if index is not None:
                fields, parts = index_fields(index)
                current.update(fields)
                self.side[FULLTEXT].extend({"_id": f"{rkey}#{i}", "k": rkey, "type": version.resource_type, **part}
                                           for i, part in enumerate(parts))
            self.current.append(current)
        if len(self.history) >= BATCH or len(self.side[CHUNKS]) > 4:
            await self.flush()

    async def flush(self) -> None:
        database = self.repo.resources.database
        for name, docs in self.side.items():
            if docs:
                await database[name].insert_many(docs, ordered=False)
                self.side[name] = []
        if self.history:
            await self.repo.history_collection.insert_many(self.history, ordered=False)
            self.history = []
        if self.current:
            await self.repo.resources.insert_many(self.current, ordered=False)
            self.current = []


# -- the migration ----------------------------------------------------------------------------------------


async def _indexer(source: Repository, settings: Settings) -> Callable[[dict[str, Any]], IndexEntries]:
    """Index entries as the server computes them, with the source store's active SearchParameters in force."""
    defs = load_definitions()
    base_urls = (settings.server.base_url,) if settings.server.base_url else ()
    indexer = Indexer.from_definitions(defs, base_urls)
    registry = SearchRegistry(indexer, defs.resource_types)
    await SearchParameters(source, indexer, InProcessRunner()).load()
    service = ResourceService(source, defs, Validator(defs), indexer, registry, base_urls)
    return service.index


async def migrate(source_spec: str, target_spec: str, settings: Settings,
                  progress: Callable[[str, int], None] | None = None) -> Report:
    """Copy every version of ``source_spec`` into the empty ``target_spec``; ``progress(stage, done)`` is called
    now and then (stages ``read`` and ``write``)."""
    source_store, target_store = Store.parse(source_spec), Store.parse(target_spec)
    if source_store == target_store:
        raise MigrationError("the source and the target are the same store")
    source = source_store.repository(settings)
    await source.open()
    report = Report()
    try:
        index = await _indexer(source, settings)
        with tempfile.TemporaryDirectory(prefix="infirmary-migrate-") as scratch:
            spool = Spool(scratch)
            try:
                before: int | None = None
                while True:
                    page = await source.history(HistoryQuery(count=PAGE, before_seq=before))
                    for entry in page.entries:
                        spool.add(entry.version)
                    if progress:
                        progress("read", spool.count)
                    if not page.entries or not page.has_older:
                        break
                    before = page.entries[-1].seq
                await _write(spool, target_store, settings, index, report, progress)
            finally:
                spool.close()
    finally:
        await source.close()
    return report


async def _write(spool: Spool, target_store: Store, settings: Settings,
                 index: Callable[[dict[str, Any]], IndexEntries], report: Report,
                 progress: Callable[[str, int], None] | None) -> None:
    if target_store.kind == "sqlite":
        sqlite_importer = SQLiteImporter(Path(target_store.location))
        try:
            await _copy(spool, sqlite_importer, index, report, progress)
        finally:
            sqlite_importer.close()
        return
    mongo = target_store.repository(settings)
    assert isinstance(mongo, MongoRepository)
    await mongo.open()
    try:
        mongo_importer = MongoImporter(mongo)
        await mongo_importer.check_empty()
        await _copy(spool, mongo_importer, index, report, progress)
    finally:
        await mongo.close()


async def _copy(spool: Spool, importer: Importer, index: Callable[[dict[str, Any]], IndexEntries], report: Report,
                progress: Callable[[str, int], None] | None) -> None:
    for version, first_seq, seq, next_lut, current in spool.oldest_first():
        entries = None
        if current:
            report.resources += 1
            if version.deleted:
                report.deleted += 1
            else:
                assert version.body is not None
                entries = index(jsonio.loads(version.body))
                report.by_type[version.resource_type] = report.by_type.get(version.resource_type, 0) + 1
        await importer.add(version, first_seq, seq, None if current else next_lut, entries)
        report.versions += 1
        if progress and report.versions % BATCH == 0:
            progress("write", report.versions)
    await importer.flush()
    if progress:
        progress("write", report.versions)

"""Apply write ops inside an open SQLite transaction (runs on the writer thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from fhir_server import jsonio
from fhir_server.errors import Conflict, FhirError, InvalidRequest
from fhir_server.search.model import AnyOf, Clause, Criterion, Not, SearchQuery
from fhir_server.storage import preconditions
from fhir_server.storage._meta import MonotonicClock, with_meta
from fhir_server.storage.base import IndexEntries, Method, NewResource, StoredVersion, WriteOp, WriteOutcome
from fhir_server.storage.sqlite._index_rows import (
    FulltextOp,
    ParamIds,
    Rows,
    delete_rows,
    flush_rows,
    write_rows,
)
from fhir_server.storage.sqlite._lookup_memo import LookupMemo, may_match
from fhir_server.storage.sqlite._search_exec import find_ids
from fhir_server.storage.sqlite._shared_rows import SharedRows

_CURRENT = """
SELECT r.rid, r.version, v.method, v.last_updated, v.body
FROM resources r JOIN versions v ON v.seq = r.current_seq
WHERE r.type = ? AND r.id = ?
"""


_BEGIN = """
SELECT (SELECT coalesce(max(rid), 0) + 1 FROM resources), (SELECT coalesce(max(seq), 0) + 1 FROM versions),
       (SELECT data_version FROM pragma_data_version())
"""
_EXISTING = "SELECT id FROM resources WHERE type = ? AND id IN (SELECT value FROM json_each(?))"
_INSERT_RESOURCE = "INSERT INTO resources (rid, type, id, version, deleted, current_seq, lu) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_VERSION = "INSERT INTO versions (seq, rid, type, version, last_updated, method, body) VALUES (?, ?, ?, ?, ?, ?, ?)"


_GONE = IndexEntries()  # a deleted resource's "entries": it matches nothing (a search wants deleted = 0)


class _Current:
    __slots__ = ("rid", "stored")

    def __init__(self, rid: int, stored: StoredVersion) -> None:
        self.rid = rid
        self.stored = stored


def _current(conn: sqlite3.Connection, resource_type: str, id: str) -> _Current | None:
    row = conn.execute(_CURRENT, (resource_type, id)).fetchone()
    if row is None:
        return None
    rid, version, method, last_updated, body = row
    return _Current(rid, StoredVersion(resource_type, id, version, last_updated, method, body))


def _reads_own_type_only(criterion: Criterion) -> bool:
    """Whether a criterion reads only index rows of the searched type (no chain, ``_has`` or ``_list``)."""
    match criterion:
        case Clause():
            return criterion.type != "list"
        case Not():
            return _reads_own_type_only(criterion.inner)
        case AnyOf():
            return all(_reads_own_type_only(c) for c in criterion.criteria)
    return False


class TxWriter:
    """Writes versions and index entries; one per writer connection.

    Within one write transaction (after :meth:`begin`) it hands out rids and version seqs itself — it holds the
    write lock, so ``max + 1`` is what SQLite would pick — which lets a create be two INSERTs.  Index rows of the
    ops of one :meth:`apply` are collected and inserted together (multi-row INSERTs, :func:`flush_rows`) at the
    end, and before a search inside the transaction that could read them: one on a type with rows waiting, or
    one that reaches into other types.

    A conditional search whose answer the plan's look-up already has is not run again when
    :class:`~fhir_server.storage.sqlite._lookup_memo.LookupMemo` can prove the answer still holds; for that it
    keeps, per resource type, what the transaction wrote (``_written``: id and index entries, None when unknown).
    """

    def __init__(self, conn: sqlite3.Connection, ids: ParamIds, memo: LookupMemo | None = None) -> None:
        self.conn = conn
        self.ids = ids
        self.clock = MonotonicClock()
        self.fulltext: list[FulltextOp] = []  # deferred to the end of the batch (see apply_fulltext)
        self.rows: Rows = {}
        self._row_types: set[str] = set()  # resource types with rows in self.rows
        self._next_rid = 0
        self._next_seq = 0
        self.shared = SharedRows(conn, ids)
        self.memo = memo
        self._data_version: int | None = None  # of the last transaction (None: none yet)
        self._written: dict[str, list[tuple[str, IndexEntries | None]]] = {}  # type → (id, new entries)

    def begin(self) -> None:
        """Call right after BEGIN IMMEDIATE (another process may have written since the last transaction)."""
        self._next_rid, self._next_seq, data_version = self.conn.execute(_BEGIN).fetchone()
        self._written.clear()
        if data_version != self._data_version:  # another connection committed (or this is the first transaction)
            self._data_version = data_version
            if self.memo is not None:
                self.memo.advance()

    def forget_templates(self) -> None:
        """After a rollback: templates made in it are gone, and may name parameter ids never committed."""
        self.shared.forget()

    def create_many(self, resource_type: str, items: Sequence[NewResource]) -> list[bool]:
        """:meth:`fhir_server.storage.base.Repository.create_many`: one look-up of the ids that exist, then one
        ``executemany`` per table for the whole batch; the rows of shared entries come from a template."""
        conn = self.conn
        existing = {row[0] for row in conn.execute(_EXISTING, (resource_type, jsonio.dumps([i.id for i in items])))}
        created: list[bool] = []
        resources: list[tuple[object, ...]] = []
        versions: list[tuple[object, ...]] = []
        rows = self.rows
        try:
            self._written.setdefault(resource_type, []).append(("", None))  # may match anything
            for item in items:
                if item.id in existing:
                    created.append(False)
                    continue
                existing.add(item.id)
                created.append(True)
                rid, seq = self._next_rid, self._next_seq
                self._next_rid, self._next_seq = rid + 1, seq + 1
                last_updated, epoch = self.clock.now_with_epoch()
                resource = item.resource if item.resource.get("id") == item.id else {**item.resource, "id": item.id}
                body = jsonio.dumps(with_meta(resource, 1, last_updated))
                resources.append((rid, resource_type, item.id, 1, 0, seq, epoch))
                versions.append((seq, rid, resource_type, 1, last_updated, "create", body))
                first_grp = 1
                if item.shared is not None:
                    first_grp += self.shared.add(resource_type, item.shared, rid)
                write_rows(conn, self.ids, resource_type, rid, item.index, self.fulltext, rows, first_grp)
            conn.executemany(_INSERT_RESOURCE, resources)
            conn.executemany(_INSERT_VERSION, versions)
            flush_rows(conn, rows)
            self.shared.flush()
        finally:
            rows.clear()
            self.shared.batch.clear()
        return created

    def _find(self, query: SearchQuery) -> list[str]:
        if self.memo is not None and query.resource_type is not None and \
                all(_reads_own_type_only(c) for c in query.criteria):
            found = self.memo.take(query)
            if found is not None and not self._may_change(query, found):
                return found
        if query.resource_type not in self._row_types and query.resource_type is not None and \
                all(_reads_own_type_only(c) for c in query.criteria):
            return find_ids(self.conn, self.ids, query, 2)  # no waiting row can match it
        self._flush()
        return find_ids(self.conn, self.ids, query, 2)

    def _may_change(self, query: SearchQuery, found: list[str]) -> bool:
        """Whether what this transaction wrote so far may change the matches of an own-type-only ``query``."""
        assert query.resource_type is not None
        for id, entries in self._written.get(query.resource_type, ()):
            if id in found or (entries is not _GONE and may_match(query, entries)):
                return True
        return False

    def _flush(self) -> None:
        flush_rows(self.conn, self.rows)
        self._row_types.clear()

    def apply(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        out = []
        try:
            for index, op in enumerate(ops):
                try:
                    out.append(self._apply_one(op))
                except FhirError as exc:
                    raise preconditions.mark_failed(exc, index) from None
            self._flush()
        finally:
            self.rows.clear()
            self._row_types.clear()
        return out

    def _apply_one(self, op: WriteOp) -> WriteOutcome:
        if op.method == "create":
            return self._create(op)
        if op.method == "update":
            return self._update(op)
        if op.method == "reindex":
            return self._reindex(op)
        return self._delete(op)

    def _reindex(self, op: WriteOp) -> WriteOutcome:
        assert op.id is not None and op.index is not None
        current = _current(self.conn, op.resource_type, op.id)
        if current is None or current.stored.deleted or current.stored.version != op.if_match:
            return WriteOutcome(200, op.resource_type, op.id, None, noop=True)
        self._flush()
        delete_rows(self.conn, current.rid, self.fulltext)
        self._written.setdefault(op.resource_type, []).append((op.id, op.index))
        write_rows(self.conn, self.ids, op.resource_type, current.rid, op.index, self.fulltext, self.rows)
        self._row_types.add(op.resource_type)
        return WriteOutcome(200, op.resource_type, op.id, current.stored)

    def _create(self, op: WriteOp) -> WriteOutcome:
        if op.if_none_exist is not None:
            existing_id = preconditions.create_target(op, self._find(op.if_none_exist))
            preconditions.check_expected(op, existing_id)
            if existing_id is not None:
                current = _current(self.conn, op.resource_type, existing_id)
                assert current is not None
                return WriteOutcome(200, op.resource_type, existing_id, current.stored, noop=True)
        assert op.id is not None and op.resource is not None
        stored = self._write(op, op.id, None, op.resource, op.index)  # an existing id breaks UNIQUE (type, id)
        return WriteOutcome(201, op.resource_type, op.id, stored, created=True)

    def _update(self, op: WriteOp) -> WriteOutcome:
        id = op.id
        if op.match is not None:
            id = preconditions.update_target(op, self._find(op.match))
            preconditions.check_expected(op, id)
        if id is None or op.resource is None:
            raise InvalidRequest("update needs an id or search criteria and a resource")
        current = _current(self.conn, op.resource_type, id)
        op.id = id
        preconditions.check_expected_version(op, current.stored if current else None)
        preconditions.check_version(op, current.stored if current else None)
        created = current is None or current.stored.deleted
        resource = op.resource if op.resource.get("id") == id else {**op.resource, "id": id}
        stored = self._write(op, id, current, resource, op.index)
        return WriteOutcome(201 if created else 200, op.resource_type, id, stored, created=created)

    def _delete(self, op: WriteOp) -> WriteOutcome:
        id = op.id
        if op.match is not None:
            id = preconditions.delete_target(op, self._find(op.match))
            preconditions.check_expected(op, id)
            if id is None:
                return WriteOutcome(204, op.resource_type, None, None, noop=True)
        assert id is not None
        current = _current(self.conn, op.resource_type, id)
        op.id = id
        preconditions.check_version(op, current.stored if current else None)
        if current is None or current.stored.deleted:
            return WriteOutcome(204, op.resource_type, id, current.stored if current else None, noop=True)
        stored = self._write(op, id, current, None, None)
        return WriteOutcome(204, op.resource_type, id, stored)

    def _write(
        self,
        op: WriteOp,
        id: str,
        current: _Current | None,
        resource: dict[str, object] | None,
        index: IndexEntries | None,
    ) -> StoredVersion:
        conn = self.conn
        version = current.stored.version + 1 if current else 1
        last_updated, epoch = self.clock.now_with_epoch()
        method: Method = "delete" if resource is None else "create" if op.method == "create" else "update"
        body = None if resource is None else jsonio.dumps(with_meta(resource, version, last_updated))
        seq = self._next_seq
        if current is None:
            rid = self._next_rid
            try:
                conn.execute(_INSERT_RESOURCE,
                             (rid, op.resource_type, id, version, 1 if resource is None else 0, seq, epoch))
            except sqlite3.IntegrityError:
                raise Conflict(f"{op.resource_type}/{id} already exists") from None
            self._next_rid += 1
        else:
            rid = current.rid
            conn.execute(
                "UPDATE resources SET version = ?, deleted = ?, current_seq = ?, lu = ? WHERE rid = ?",
                (version, 1 if resource is None else 0, seq, epoch, rid),
            )
        conn.execute(_INSERT_VERSION, (seq, rid, op.resource_type, version, last_updated, method, body))
        self._next_seq += 1
        # what may now match: a deletion nothing (only its id may be among the matches); entries None: anything
        self._written.setdefault(op.resource_type, []).append((id, index if resource is not None else _GONE))
        if current is not None:
            self._flush()
            delete_rows(conn, rid, self.fulltext)
        if index is not None and resource is not None:
            write_rows(conn, self.ids, op.resource_type, rid, index, self.fulltext, self.rows)
            self._row_types.add(op.resource_type)
        return StoredVersion(op.resource_type, id, version, last_updated, method, body)

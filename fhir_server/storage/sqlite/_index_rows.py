"""Index entries → rows of the SQLite index tables, and the (type, code) → pid map."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from fhir_server.indexing.entries import (
    DateEntry,
    Entry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)

TABLES = ("idx_string", "idx_token", "idx_date", "idx_number", "idx_quantity", "idx_reference", "idx_uri")

INSERT = {
    "idx_string": "INSERT OR IGNORE INTO idx_string (pid, norm, exact, rid, grp) VALUES (?, ?, ?, ?, ?)",
    "idx_token": "INSERT OR IGNORE INTO idx_token (pid, code, system, rid, grp, text, type_system, type_code) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_date": "INSERT OR IGNORE INTO idx_date (pid, low, high, rid, grp) VALUES (?, ?, ?, ?, ?)",
    "idx_number": "INSERT OR IGNORE INTO idx_number (pid, value, low, high, rid, grp) VALUES (?, ?, ?, ?, ?, ?)",
    "idx_quantity": "INSERT OR IGNORE INTO idx_quantity (pid, code, system, value, low, high, rid, grp, unit, "
    "ccode, cvalue, clow, chigh) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_reference": "INSERT OR IGNORE INTO idx_reference (pid, type, id, rid, grp, version, url, ident_system, "
    "ident_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "idx_uri": "INSERT OR IGNORE INTO idx_uri (pid, uri, rid, grp) VALUES (?, ?, ?, ?)",
}


def component_code(code: str, index: int) -> str:
    """The pseudo-parameter under which component ``index`` of a composite parameter is stored."""
    return f"{code}${index}"


class ParamIds:
    """The (resource type, parameter code) → pid map, cached.

    New pairs are inserted by the writer inside its transaction.  Until that transaction commits they are
    *pending*: if the writer rolls back (a failed request's savepoint, or a failed commit) they are dropped from
    the cache, since SQLite would hand the same pid to the next new pair.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT type, code, pid FROM search_params").fetchall()
        with self._lock:
            self._ids.update({(t, c): p for t, c, p in rows})

    def get(self, conn: sqlite3.Connection, resource_type: str, code: str) -> int | None:
        """The pid, or None when no resource has ever been indexed for it (then nothing can match)."""
        pid = self._ids.get((resource_type, code))
        if pid is None:
            row = conn.execute(
                "SELECT pid FROM search_params WHERE type = ? AND code = ?", (resource_type, code)
            ).fetchone()
            if row is not None:
                pid = int(row[0])
                with self._lock:
                    self._ids[(resource_type, code)] = pid
        return pid

    def ensure(self, conn: sqlite3.Connection, resource_type: str, code: str) -> int:
        """The pid, created if needed (writer only, inside its transaction)."""
        pid = self.get(conn, resource_type, code)
        if pid is None:
            cursor = conn.execute("INSERT INTO search_params (type, code) VALUES (?, ?)", (resource_type, code))
            assert cursor.lastrowid is not None
            pid = cursor.lastrowid
            with self._lock:
                self._ids[(resource_type, code)] = pid
                self._pending.append((resource_type, code))
        return pid

    def mark(self) -> int:
        return len(self._pending)

    def rollback_to(self, mark: int) -> None:
        with self._lock:
            for key in self._pending[mark:]:
                self._ids.pop(key, None)
            del self._pending[mark:]

    def committed(self) -> None:
        with self._lock:
            self._pending.clear()


def _row(entry: Entry, pid: int, rid: int, grp: int) -> tuple[str, tuple[Any, ...]]:
    match entry:
        case StringEntry():
            return "idx_string", (pid, entry.norm, entry.exact, rid, grp)
        case TokenEntry():
            return "idx_token", (pid, entry.code or "", entry.system or "", rid, grp, entry.text or "",
                                 entry.type_system or "", entry.type_code or "")
        case DateEntry():
            return "idx_date", (pid, entry.low, entry.high, rid, grp)
        case NumberEntry():
            return "idx_number", (pid, entry.value, entry.low, entry.high, rid, grp)
        case QuantityEntry():
            return "idx_quantity", (pid, entry.code or "", entry.system or "", entry.value, entry.low, entry.high,
                                    rid, grp, entry.unit or "", entry.canonical_code or "", entry.canonical_value,
                                    entry.canonical_low, entry.canonical_high)
        case ReferenceEntry():
            return "idx_reference", (pid, entry.type or "", entry.id or "", rid, grp, entry.version or "",
                                     entry.url or "", entry.identifier_system or "", entry.identifier_value or "")
        case UriEntry():
            return "idx_uri", (pid, entry.uri, rid, grp)
    raise TypeError(f"not an index entry: {entry!r}")


def _simple(entries: IndexEntries) -> Iterable[Entry]:
    yield from entries.strings
    yield from entries.tokens
    yield from entries.dates
    yield from entries.numbers
    yield from entries.quantities
    yield from entries.references
    yield from entries.uris


_CHUNK = 64  # most rows per multi-row INSERT (64 rows of 13 columns stays under SQLite's oldest 999-variable limit)


def _chunk_size(left: int) -> int:
    """The largest power of two up to ``left`` and ``_CHUNK``: few statement shapes, each prepared once."""
    return min(_CHUNK, 1 << (left.bit_length() - 1))


FulltextOp = tuple[int, str, str] | tuple[int]  # (rid, text, content) to insert, or (rid,) to delete


def apply_fulltext(conn: sqlite3.Connection, ops: list[FulltextOp]) -> None:
    """Apply deferred full-text changes.  FTS5 flushes its pending terms at every SAVEPOINT release, which made
    it half the cost of a write; the writer therefore applies them once per commit, after the savepoints.  Runs
    of inserts (or of deletes) become one statement per chunk, in their order."""
    start = 0
    while start < len(ops):
        kind = len(ops[start])
        end = start + 1
        while end < len(ops) and end - start < _CHUNK and len(ops[end]) == kind:
            end += 1
        end = start + _chunk_size(end - start)
        run = ops[start:end]
        if kind == 1:
            conn.execute(f"DELETE FROM fulltext WHERE rowid IN ({', '.join('?' * len(run))})",
                         [op[0] for op in run])
        else:
            conn.execute(f"INSERT INTO fulltext (rowid, text, content) VALUES {', '.join(['(?, ?, ?)'] * len(run))}",
                         [value for op in run for value in op])
        start = end


Rows = dict[str, list[tuple[Any, ...]]]  # table → rows to insert


def write_rows(
    conn: sqlite3.Connection,
    ids: ParamIds,
    resource_type: str,
    rid: int,
    entries: IndexEntries,
    fulltext: list[FulltextOp],
    rows: Rows | None = None,
    first_grp: int = 1,
) -> None:
    """Index rows of one resource version.  With ``rows`` they are collected there (the caller inserts many
    resources' rows together: :func:`flush_rows`); otherwise inserted at once.
    Composites are numbered (``grp``) from ``first_grp``."""
    out: Rows = {} if rows is None else rows
    for entry in _simple(entries):
        table, row = _row(entry, ids.ensure(conn, resource_type, entry.param), rid, 0)
        out.setdefault(table, []).append(row)
    for grp, composite in enumerate(entries.composites, start=first_grp):
        for index, component in enumerate(composite.components):
            pid = ids.ensure(conn, resource_type, component_code(composite.param, index))
            for entry in component:
                table, row = _row(entry, pid, rid, grp)
                out.setdefault(table, []).append(row)
        # the composite itself, so that :missing works on it
        pid = ids.ensure(conn, resource_type, composite.param)
        out.setdefault("idx_token", []).append((pid, "", "", rid, grp, "", "", ""))
    if rows is None:
        flush_rows(conn, out)
    if entries.narrative or entries.content:
        fulltext.append((rid, entries.narrative, entries.content))


_MULTI: dict[tuple[str, int], str] = {}


def _insert_many(table: str, count: int) -> str:
    """``INSERT OR IGNORE INTO table (…) VALUES (…), (…), …`` for ``count`` rows (cached per table and count)."""
    sql = _MULTI.get((table, count))
    if sql is None:
        head, _, one = INSERT[table].partition(" VALUES ")
        sql = _MULTI[(table, count)] = f"{head} VALUES {', '.join([one] * count)}"
    return sql


def flush_rows(conn: sqlite3.Connection, rows: Rows) -> None:
    """Insert the collected rows: per table, one multi-row INSERT per chunk of a power-of-two size (at most
    seven statement shapes per table, so they stay prepared), instead of one SQLite step per row.  Each step
    releases and re-acquires the GIL, which costs up to the switch interval while the event loop is busy."""
    for table, table_rows in rows.items():
        start, left = 0, len(table_rows)
        while left:
            size = _chunk_size(left)
            chunk = table_rows[start:start + size]
            conn.execute(_insert_many(table, size), [value for row in chunk for value in row])
            start += size
            left -= size
    rows.clear()


def delete_rows(conn: sqlite3.Connection, rid: int, fulltext: list[FulltextOp]) -> None:
    for table in TABLES:
        conn.execute(f"DELETE FROM {table} WHERE rid = ?", (rid,))
    fulltext.append((rid,))


"""Index rows that many resources of one :meth:`Repository.create_many` share, inserted by SQLite itself.

The AuditEvents of one client differ in few index entries; the rest (type, subtype, action, outcome, agent,
address) are the same rows but for the rid.  Each distinct shared part (:class:`SharedIndex`, by key) is
written once, parameter ids resolved, to a TEMP table of this connection (``tmpl_<table>``, numbered by
``tkey``); a batch then lists ``(rid, tkey)`` pairs and one ``INSERT … SELECT`` per index table copies the rows
for every resource of it — binding two values per resource instead of every column of every row.  The rows
stored are exactly those :func:`write_rows` writes for the same entries (tests/storage/test_sqlite_bulk.py).

Temp tables are part of the write transaction: after a rollback the templates are forgotten
(:meth:`SharedRows.forget`) and their rows deleted with the next batch; template numbers are never used again, so
rows a rollback left behind can match nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from fhir_server.storage.base import SharedIndex
from fhir_server.storage.sqlite._index_rows import INSERT, ParamIds, Rows, write_rows

_MAX = 1024  # templates kept; after the batch that reaches it all are dropped and made again as needed


def _columns(table: str) -> list[str]:
    head = INSERT[table].split("(", 1)[1].split(")", 1)[0]
    return [c.strip() for c in head.split(",")]


_COLUMNS = {table: _columns(table) for table in INSERT}
_SETUP = [
    statement
    for table, columns in _COLUMNS.items()
    for statement in (
        f"CREATE TEMP TABLE IF NOT EXISTS tmpl_{table} (tkey INTEGER NOT NULL, "
        + ", ".join(c for c in columns if c != "rid") + ")",
        f"CREATE INDEX IF NOT EXISTS temp.tmpl_{table}_by_key ON tmpl_{table} (tkey)",
    )
] + ["CREATE TEMP TABLE IF NOT EXISTS tmpl_batch (rid INTEGER NOT NULL, tkey INTEGER NOT NULL)"]
_FILL = {
    table: f"INSERT INTO tmpl_{table} (tkey, {', '.join(c for c in cols if c != 'rid')}) "
    f"VALUES (?{', ?' * (len(cols) - 1)})"
    for table, cols in _COLUMNS.items()
}
_COPY = {
    table: f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) SELECT "
    + ", ".join("b.rid" if c == "rid" else f"t.{c}" for c in cols)
    + f" FROM temp.tmpl_batch b JOIN temp.tmpl_{table} t ON t.tkey = b.tkey"
    for table, cols in _COLUMNS.items()
}


class SharedRows:
    """The templates of one writer connection, and the ``(rid, tkey)`` pairs of the batch being written."""

    def __init__(self, conn: sqlite3.Connection, ids: ParamIds) -> None:
        self.conn = conn
        self.ids = ids
        self._keys: dict[tuple[str, bytes], tuple[int, int]] = {}  # → (tkey, composites)
        self._tables: set[str] = set()  # tables some template has rows in
        self._next = 1
        self._ready = False
        self._stale = False
        self.batch: list[tuple[int, int]] = []

    def add(self, resource_type: str, shared: SharedIndex, rid: int) -> int:
        """Queue the shared rows for ``rid``; answers how many composites they hold (the resource's own are
        numbered after them)."""
        found = self._keys.get((resource_type, shared.key))
        if found is None:
            found = self._keys[(resource_type, shared.key)] = self._make(resource_type, shared)
        self.batch.append((rid, found[0]))
        return found[1]

    def flush(self) -> None:
        """Insert the queued rows (one statement per index table)."""
        if not self.batch:
            return
        conn = self.conn
        conn.executemany("INSERT INTO tmpl_batch (rid, tkey) VALUES (?, ?)", self.batch)
        self.batch.clear()
        for table in self._tables:
            conn.execute(_COPY[table])
        conn.execute("DELETE FROM tmpl_batch")
        if self._stale or len(self._keys) >= _MAX:  # between batches: no queued pair names a template
            for table in _COLUMNS:
                conn.execute(f"DELETE FROM tmpl_{table}")
            self._keys.clear()
            self._tables.clear()
            self._stale = False

    def forget(self) -> None:
        self._keys.clear()
        self._tables.clear()
        self.batch.clear()
        self._stale = True

    def _make(self, resource_type: str, shared: SharedIndex) -> tuple[int, int]:
        conn = self.conn
        if not self._ready:
            for statement in _SETUP:
                conn.execute(statement)
            self._ready = True
        tkey, self._next = self._next, self._next + 1
        rows: Rows = {}
        write_rows(conn, self.ids, resource_type, 0, shared.entries, [], rows)
        for table, table_rows in rows.items():
            at = _COLUMNS[table].index("rid")
            conn.executemany(_FILL[table], [_without(row, at, tkey) for row in table_rows])
            self._tables.add(table)
        return tkey, len(shared.entries.composites)


def _without(row: tuple[Any, ...], at: int, tkey: int) -> tuple[Any, ...]:
    return (tkey, *row[:at], *row[at + 1:])

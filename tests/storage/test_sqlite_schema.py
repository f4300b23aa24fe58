"""The SQLite store's schema: created on a new file, migrated from older versions, refused when unknown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fhir_server.storage.sqlite._schema import SCHEMA_VERSION, connect, initialise


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_new_store_gets_current_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db", 1000)
    initialise(conn)
    assert conn.execute("SELECT value FROM store_meta").fetchone()[0] == str(SCHEMA_VERSION)
    assert {"idx_reference_by_url", "idx_quantity_by_canonical"} <= _indexes(conn)
    initialise(conn)  # idempotent
    assert conn.execute("SELECT count(*) FROM store_meta").fetchone()[0] == 1


def test_version_3_store_is_migrated(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db", 1000)
    initialise(conn)
    # make it look like a version-3 store: full (not partial) indexes under the old names
    for name in ("idx_reference_by_url", "idx_reference_by_ident", "idx_quantity_by_canonical"):
        conn.execute(f"DROP INDEX {name}")
    conn.execute("CREATE INDEX idx_reference_url ON idx_reference (pid, url)")
    conn.execute("CREATE INDEX idx_reference_ident ON idx_reference (pid, ident_value)")
    conn.execute("CREATE INDEX idx_quantity_canonical ON idx_quantity (pid, ccode, cvalue)")
    conn.execute("UPDATE store_meta SET value = '3'")
    initialise(conn)
    names = _indexes(conn)
    assert "idx_reference_url" not in names and "idx_quantity_canonical" not in names
    assert {"idx_reference_by_url", "idx_reference_by_ident", "idx_quantity_by_canonical"} <= names
    assert conn.execute("SELECT value FROM store_meta").fetchone()[0] == str(SCHEMA_VERSION)


@pytest.mark.parametrize("version", ["1", str(SCHEMA_VERSION + 1)])
def test_unknown_versions_are_refused(tmp_path: Path, version: str) -> None:
    conn = connect(tmp_path / "s.db", 1000)
    initialise(conn)
    conn.execute("UPDATE store_meta SET value = ?", (version,))
    with pytest.raises(RuntimeError, match="not supported"):
        initialise(conn)

"""SQLite schema and connection settings for the embedded store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fhir_server.search.values import great_circle_km

SCHEMA_VERSION = 5

# statements that bring a store of version N to N + 1 (the new objects themselves come from SCHEMA)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    3: (
        "DROP INDEX IF EXISTS idx_reference_url",
        "DROP INDEX IF EXISTS idx_reference_ident",
        "DROP INDEX IF EXISTS idx_quantity_canonical",
    ),
    4: (),  # version 5 adds resources_by_type
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- one row per resource: the pointer to its current version
CREATE TABLE IF NOT EXISTS resources (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    current_seq INTEGER NOT NULL,
    lu REAL NOT NULL DEFAULT 0,  -- meta.lastUpdated of the current version, epoch seconds (for _lastUpdated)
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resources_by_lu ON resources (type, lu);
-- one type in rid order (an index on type alone is ordered by type, then rowid): searches that scan a type
-- meet their first page early and need no sort
CREATE INDEX IF NOT EXISTS resources_by_type ON resources (type);

-- every version ever written, in commit order (seq), body NULL for a delete
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    method TEXT NOT NULL,
    body BLOB,
    UNIQUE (rid, version)
);
CREATE INDEX IF NOT EXISTS versions_by_type ON versions (type, seq);
CREATE INDEX IF NOT EXISTS versions_by_time ON versions (last_updated);

-- search parameters by (resource type, code); index rows refer to them by a small integer
CREATE TABLE IF NOT EXISTS search_params (
    pid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    code TEXT NOT NULL,
    UNIQUE (type, code)
);

-- typed search index of current, non-deleted versions. Absent strings are '' (primary keys are NOT NULL),
-- grp ties the components of one composite element together (0 elsewhere)
CREATE TABLE IF NOT EXISTS idx_string (
    pid INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL,
    PRIMARY KEY (pid, norm, exact, rid, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_string_rid ON idx_string (rid);

CREATE TABLE IF NOT EXISTS idx_token (
    pid INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL,
    text TEXT NOT NULL, type_system TEXT NOT NULL, type_code TEXT NOT NULL,
    PRIMARY KEY (pid, code, system, rid, grp, text, type_system, type_code)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_token_rid ON idx_token (rid);

CREATE TABLE IF NOT EXISTS idx_date (
    pid INTEGER NOT NULL, low REAL NOT NULL, high REAL NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL,
    PRIMARY KEY (pid, low, high, rid, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_date_rid ON idx_date (rid);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (pid, high);

CREATE TABLE IF NOT EXISTS idx_number (
    pid INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    PRIMARY KEY (pid, value, low, high, rid, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_number_rid ON idx_number (rid);

CREATE TABLE IF NOT EXISTS idx_quantity (
    pid INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL, value REAL NOT NULL, low REAL NOT NULL,
    high REAL NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL, unit TEXT NOT NULL,
    ccode TEXT NOT NULL, cvalue REAL, clow REAL, chigh REAL,
    PRIMARY KEY (pid, code, system, value, low, high, rid, grp, unit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_quantity_rid ON idx_quantity (rid);
-- partial indexes: most rows have no canonical unit, url or identifier, and need no entry
CREATE INDEX IF NOT EXISTS idx_quantity_by_canonical ON idx_quantity (pid, ccode, cvalue) WHERE ccode != '';

CREATE TABLE IF NOT EXISTS idx_reference (
    pid INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL,
    version TEXT NOT NULL, url TEXT NOT NULL, ident_system TEXT NOT NULL, ident_value TEXT NOT NULL,
    PRIMARY KEY (pid, id, type, rid, grp, version, url, ident_system, ident_value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_reference_rid ON idx_reference (rid);
CREATE INDEX IF NOT EXISTS idx_reference_by_url ON idx_reference (pid, url) WHERE url != '';
CREATE INDEX IF NOT EXISTS idx_reference_by_ident ON idx_reference (pid, ident_value) WHERE ident_value != '';

CREATE TABLE IF NOT EXISTS idx_uri (
    pid INTEGER NOT NULL, uri TEXT NOT NULL, rid INTEGER NOT NULL, grp INTEGER NOT NULL,
    PRIMARY KEY (pid, uri, rid, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_uri_rid ON idx_uri (rid);

-- full-text search (_text: narrative, _content: every string), rowid = resources.rid
CREATE VIRTUAL TABLE IF NOT EXISTS fulltext USING fts5 (
    text, content, tokenize = 'unicode61 remove_diacritics 2'
);
"""


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, ``synchronous=FULL``."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000,
                           cached_statements=256)  # search shapes and the writer's multi-row INSERTs stay prepared
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")
    # the most SQLite maps: pages re-read after another process wrote come from the OS cache without a copy
    conn.execute("PRAGMA mmap_size = 2147418112")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the repository's Checkpointer thread does it (see _writer)
    conn.create_function("great_circle_km", 4, great_circle_km, deterministic=True)
    return conn


def initialise(conn: sqlite3.Connection) -> None:
    """Create the schema, or migrate an older store to it (in one transaction per step)."""
    conn.execute("CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row is not None else None
    if version is not None and (version > SCHEMA_VERSION or version < min(MIGRATIONS, default=SCHEMA_VERSION)):
        conn.execute("ROLLBACK")
        raise RuntimeError(f"store schema version {version} is not supported (this server: {SCHEMA_VERSION})")
    while version is not None and version < SCHEMA_VERSION:
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        version += 1
    conn.execute("COMMIT")
    conn.executescript(SCHEMA)  # every statement is idempotent (IF NOT EXISTS): creates what is missing
    conn.execute("INSERT OR REPLACE INTO store_meta (key, value) VALUES ('schema_version', ?)",
                 (str(SCHEMA_VERSION),))

"""SQLite schema and connection settings for the embedded store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

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
    UNIQUE (type, id)
);

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

-- token search index of current versions
CREATE TABLE IF NOT EXISTS idx_token (
    rid INTEGER NOT NULL,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_lookup ON idx_token (param, code, system);
CREATE INDEX IF NOT EXISTS idx_token_rid ON idx_token (rid);
"""


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, ``synchronous=FULL``."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA mmap_size = 268435456")
    return conn


def initialise(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) != SCHEMA_VERSION:
        conn.execute("ROLLBACK")
        raise RuntimeError(f"store schema version {row[0]} is not supported (expected {SCHEMA_VERSION})")
    conn.execute("COMMIT")

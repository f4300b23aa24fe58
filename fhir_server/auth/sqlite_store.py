"""``AuthStore`` on a small SQLite file of its own (``<data_dir>/auth.db`` by default), WAL mode.

One connection per process behind a lock: every call is a single short statement or a small transaction, and
several worker processes share the file through SQLite's own locking (``BEGIN IMMEDIATE`` for read-modify-write).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fhir_server.auth.models import AuthCode, Client, LaunchContext, RefreshToken, Session, User

SCHEMA_VERSION = 1
LISTS_RECHECK_S = 0.05  # another process's revocation or break-glass grant is seen within this long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, kind TEXT NOT NULL,
  display_name TEXT NOT NULL, roles TEXT NOT NULL, patient_id TEXT, practitioner_id TEXT,
  practitioner_role_id TEXT, active INTEGER NOT NULL, failed_logins INTEGER NOT NULL DEFAULT 0,
  locked_until REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
  client_id TEXT PRIMARY KEY, name TEXT NOT NULL, auth_method TEXT NOT NULL, scope TEXT NOT NULL,
  redirect_uris TEXT NOT NULL, grant_types TEXT NOT NULL, secret_hash TEXT, jwks TEXT, jwks_uri TEXT,
  registration TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
  code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0, expires_at REAL NOT NULL,
  grant_id TEXT NOT NULL, nonce TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS codes_nonce ON codes(client_id, nonce);
CREATE TABLE IF NOT EXISTS refresh_tokens (
  token_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, grant_id TEXT NOT NULL, session_id TEXT,
  expires_at REAL NOT NULL, used_at REAL, revoked INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_grant ON refresh_tokens(grant_id);
CREATE INDEX IF NOT EXISTS refresh_session ON refresh_tokens(session_id);
CREATE INDEX IF NOT EXISTS refresh_client ON refresh_tokens(client_id);
CREATE TABLE IF NOT EXISTS revoked (id TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS used_jtis (
  client_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (client_id, jti)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS launches (
  launch_id TEXT PRIMARY KEY, expires_at REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, auth_time INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS break_glass (
  user_id TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL, granted_by TEXT NOT NULL,
  granted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures(key, at);
"""


class SQLiteAuthStore:
    def __init__(self, path: Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        # the revocation list and break-glass grants, read on every FHIR request, are kept in memory: read again
        # at once after this store wrote, and when another process committed to the file (its WAL changes),
        # which is looked at every LISTS_RECHECK_S (a stat costs about as much as the query it saves)
        self._writes = 0
        self._lists_stamp: tuple[Any, ...] | None = None
        self._lists_checked = (-1, 0.0)
        self._revoked: frozenset[str] = frozenset()
        self._break_glass: dict[str, float] = {}

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # password hashes and token digests: readable by the server's user only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                               timeout=self.busy_timeout_ms / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the auth store is not open")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            self._writes += 1
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            self._writes += 1
            return self._db.execute(sql, args).rowcount

    # -- users ----------------------------------------------------------------------------------------------------

    _USER_COLS = ("id, username, password_hash, kind, display_name, roles, patient_id, practitioner_id, "
                  "practitioner_role_id, active, failed_logins, locked_until, created_at")

    def add_user(self, user: User) -> None:
        try:
            self._run(
                f"INSERT INTO users ({self._USER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                user.id, user.username, user.password_hash, user.kind, user.display_name, json.dumps(user.roles),
                user.patient_id, user.practitioner_id, user.practitioner_role_id, int(user.active),
                user.failed_logins, user.locked_until, user.created_at,
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a user with id {user.id!r} or username {user.username!r} exists") from exc

    @staticmethod
    def _user(row: tuple[Any, ...] | None) -> User | None:
        if row is None:
            return None
        return User(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6], row[7], row[8],
                    bool(row[9]), int(row[10]), float(row[11]), float(row[12]))

    def get_user(self, user_id: str) -> User | None:
        return self._user(self._one(f"SELECT {self._USER_COLS} FROM users WHERE id = ?", user_id))

    def get_user_by_username(self, username: str) -> User | None:
        return self._user(self._one(f"SELECT {self._USER_COLS} FROM users WHERE username = ?", username))

    def list_users(self) -> list[User]:
        rows = self._all(f"SELECT {self._USER_COLS} FROM users ORDER BY username")
        return [u for u in (self._user(r) for r in rows) if u is not None]

    def remove_user(self, user_id: str) -> bool:
        with self._tx() as db:
            gone = db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            # the user's access tokens die with them (the validator checks "user:<id>")
            db.execute("INSERT OR REPLACE INTO revoked (id, until) VALUES (?, ?)",
                       (f"user:{user_id}", time.time() + 86_400))
            return gone

    def set_login_state(self, user_id: str, failed_logins: int, locked_until: float) -> None:
        self._run("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?", failed_logins, locked_until,
                  user_id)

    def count_failed_login(self, user_id: str, max_failures: int, locked_until: float) -> float:
        # one statement: the right-hand sides see the row as it was, so concurrent failures each count
        with self._lock:
            self._writes += 1
            row = self._db.execute(
                "UPDATE users SET "
                "locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END, "
                "failed_logins = CASE WHEN failed_logins + 1 >= ? THEN 0 ELSE failed_logins + 1 END "
                "WHERE id = ? RETURNING locked_until", (max_failures, locked_until, max_failures, user_id)).fetchone()
        return float(row[0]) if row else 0.0

    def set_password(self, user_id: str, password_hash: str) -> None:
        self._run("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE id = ?",
                  password_hash, user_id)

    # -- clients --------------------------------------------------------------------------------------------------

    _CLIENT_COLS = ("client_id, name, auth_method, scope, redirect_uris, grant_types, secret_hash, jwks, jwks_uri, "
                    "registration, created_at")

    def add_client(self, client: Client) -> None:
        try:
            self._run(
                f"INSERT INTO clients ({self._CLIENT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                client.client_id, client.name, client.auth_method, client.scope, json.dumps(client.redirect_uris),
                json.dumps(client.grant_types), client.secret_hash,
                json.dumps(client.jwks) if client.jwks is not None else None, client.jwks_uri, client.registration,
                client.created_at,
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a client with id {client.client_id!r} exists") from exc

    @staticmethod
    def _client(row: tuple[Any, ...] | None) -> Client | None:
        if row is None:
            return None
        return Client(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), tuple(json.loads(row[5])), row[6],
                      json.loads(row[7]) if row[7] else None, row[8], row[9], float(row[10]))

    def get_client(self, client_id: str) -> Client | None:
        return self._client(self._one(f"SELECT {self._CLIENT_COLS} FROM clients WHERE client_id = ?", client_id))

    def list_clients(self) -> list[Client]:
        rows = self._all(f"SELECT {self._CLIENT_COLS} FROM clients ORDER BY client_id")
        return [c for c in (self._client(r) for r in rows) if c is not None]

    def remove_client(self, client_id: str) -> bool:
        with self._tx() as db:
            gone = db.execute("DELETE FROM clients WHERE client_id = ?", (client_id,)).rowcount > 0
            grants = [r[0] for r in db.execute(
                "SELECT DISTINCT grant_id FROM refresh_tokens WHERE client_id = ? UNION "
                "SELECT DISTINCT grant_id FROM codes WHERE client_id = ?", (client_id, client_id))]
            until = time.time() + 86_400
            db.executemany("INSERT OR REPLACE INTO revoked (id, until) VALUES (?, ?)", [(g, until) for g in grants])
            db.execute("DELETE FROM refresh_tokens WHERE client_id = ?", (client_id,))
            db.execute("DELETE FROM codes WHERE client_id = ?", (client_id,))
            # access tokens of a removed client die with its client id as a revoked grant too
            db.execute("INSERT OR REPLACE INTO revoked (id, until) VALUES (?, ?)", (f"client:{client_id}", until))
            return gone

    # -- codes ----------------------------------------------------------------------------------------------------

    def add_code(self, code: AuthCode) -> None:
        self._run("INSERT INTO codes (code_hash, client_id, expires_at, grant_id, nonce, record) VALUES (?,?,?,?,?,?)",
                  code.code_hash, code.client_id, code.expires_at, code.grant_id, code.nonce, _dump(code))

    def take_code(self, code_hash: str, client_id: str) -> AuthCode | None:
        with self._tx() as db:
            row = db.execute("SELECT client_id, used, expires_at, grant_id, record FROM codes WHERE code_hash = ?",
                             (code_hash,)).fetchone()
            if row is None or row[0] != client_id:
                return None
            if row[1]:
                _revoke_grant(db, row[3], time.time() + 86_400)
                return None
            db.execute("UPDATE codes SET used = 1 WHERE code_hash = ?", (code_hash,))
            if row[2] <= time.time():
                return None
            return AuthCode(**json.loads(row[4]))

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return self._one("SELECT 1 FROM codes WHERE client_id = ? AND nonce = ?", client_id, nonce) is not None

    # -- refresh tokens -------------------------------------------------------------------------------------------

    def add_refresh_token(self, token: RefreshToken) -> None:
        self._run(
            "INSERT INTO refresh_tokens (token_hash, client_id, grant_id, session_id, expires_at, record) "
            "VALUES (?,?,?,?,?,?)",
            token.token_hash, token.client_id, token.grant_id, token.session_id, token.expires_at, _dump(token),
        )

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        row = self._one("SELECT record, used_at, revoked FROM refresh_tokens WHERE token_hash = ?", token_hash)
        if row is None:
            return None
        record = json.loads(row[0])
        record["used_at"] = row[1]
        record["revoked"] = bool(row[2])
        return RefreshToken(**record)

    def use_refresh_token(self, token_hash: str) -> bool:
        return self._run(
            "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND revoked = 0",
            time.time(), token_hash,
        ) == 1

    def revoke_refresh_token(self, token_hash: str) -> None:
        self._run("UPDATE refresh_tokens SET revoked = 1 WHERE token_hash = ?", token_hash)

    def revoke_grant(self, grant_id: str, until: float) -> None:
        with self._tx() as db:
            _revoke_grant(db, grant_id, until)

    # -- revocation list ------------------------------------------------------------------------------------------

    def revoke_ids(self, ids: list[str], until: float) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO revoked (id, until) VALUES (?, ?)", [(i, until) for i in ids])

    def _stamp(self) -> tuple[Any, ...]:
        """Changes whenever any process commits to the file (WAL frames are appended) or this store writes."""
        stats: list[tuple[int, int, int] | None] = []
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                st = os.stat(path)
                stats.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                stats.append(None)
        return (self._writes, *stats)

    def _lists(self) -> None:
        """Read the revocation list and the break-glass grants again if the file changed since last time."""
        now = time.monotonic()
        writes, checked = self._lists_checked
        if writes == self._writes and now - checked < LISTS_RECHECK_S:
            return
        self._lists_checked = (self._writes, now)
        stamp = self._stamp()  # taken before reading: a commit in between is read again next time
        if stamp == self._lists_stamp:
            return
        with self._lock:
            revoked = frozenset(r[0] for r in self._db.execute("SELECT id FROM revoked"))
            glass = {r[0]: float(r[1]) for r in self._db.execute("SELECT user_id, until FROM break_glass")}
            self._revoked, self._break_glass, self._lists_stamp = revoked, glass, stamp

    def is_revoked(self, ids: Sequence[str]) -> bool:
        self._lists()
        return not self._revoked.isdisjoint(ids)

    # -- client assertions ----------------------------------------------------------------------------------------

    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        try:
            self._run("INSERT INTO used_jtis (client_id, jti, expires_at) VALUES (?, ?, ?)", client_id, jti,
                      expires_at)
        except sqlite3.IntegrityError:
            return False
        return True

    # -- launch contexts ------------------------------------------------------------------------------------------

    def add_launch(self, launch: LaunchContext) -> None:
        self._run("INSERT INTO launches (launch_id, expires_at, record) VALUES (?, ?, ?)", launch.launch_id,
                  launch.expires_at, _dump(launch))

    def get_launch(self, launch_id: str) -> LaunchContext | None:
        row = self._one("SELECT record, used FROM launches WHERE launch_id = ?", launch_id)
        if row is None:
            return None
        record = json.loads(row[0])
        record["used"] = bool(row[1])
        return LaunchContext(**record)

    def use_launch(self, launch_id: str) -> bool:
        return self._run("UPDATE launches SET used = 1 WHERE launch_id = ? AND used = 0", launch_id) == 1

    # -- sessions -------------------------------------------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self._run("INSERT INTO sessions (session_id, user_id, auth_time, expires_at) VALUES (?, ?, ?, ?)",
                  session.session_id, session.user_id, session.auth_time, session.expires_at)

    def get_session(self, session_id: str) -> Session | None:
        row = self._one("SELECT session_id, user_id, auth_time, expires_at FROM sessions WHERE session_id = ?",
                        session_id)
        if row is None:
            return None
        return Session(row[0], row[1], int(row[2]), float(row[3]))

    def end_session(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            db.execute("UPDATE refresh_tokens SET revoked = 1 WHERE session_id = ?", (session_id,))

    # -- login throttling -----------------------------------------------------------------------------------------

    def add_login_failure(self, key: str, at: float) -> None:
        self._run("INSERT INTO login_failures (key, at) VALUES (?, ?)", key, at)

    def count_login_failures(self, key: str, since: float) -> int:
        row = self._one("SELECT count(*) FROM login_failures WHERE key = ? AND at >= ?", key, since)
        return int(row[0]) if row else 0

    # -- housekeeping ---------------------------------------------------------------------------------------------

    # -- break-glass --------------------------------------------------------------------------------------------

    def grant_break_glass(self, user_id: str, until: float, reason: str, granted_by: str, at: float) -> None:
        self._run("INSERT OR REPLACE INTO break_glass (user_id, until, reason, granted_by, granted_at) "
                  "VALUES (?, ?, ?, ?, ?)", user_id, until, reason, granted_by, at)

    def break_glass_until(self, user_id: str) -> float:
        self._lists()
        return self._break_glass.get(user_id, 0.0)

    def end_break_glass(self, user_id: str) -> bool:
        return self._run("DELETE FROM break_glass WHERE user_id = ?", user_id) > 0

    def purge(self, now: float) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM break_glass WHERE until < ?", (now,))
            db.execute("DELETE FROM codes WHERE expires_at < ?", (now - 86_400,))
            db.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM revoked WHERE until < ?", (now,))
            db.execute("DELETE FROM used_jtis WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM launches WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM login_failures WHERE at < ?", (now - 86_400,))


def _revoke_grant(db: sqlite3.Connection, grant_id: str, until: float) -> None:
    db.execute("UPDATE refresh_tokens SET revoked = 1 WHERE grant_id = ?", (grant_id,))
    db.execute("INSERT OR REPLACE INTO revoked (id, until) VALUES (?, ?)", (grant_id, until))


def _dump(record: Any) -> str:
    return json.dumps(asdict(record))

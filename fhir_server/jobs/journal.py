"""The in-process queue's journal: queued jobs kept on disk, so that a restart resumes them.

The in-process runner (the embedded default) holds its queue in memory.  Every job it accepts — run now, later, or
again after a failure (a rest-hook notification waiting for its receiver to come back, an HL7 order's next
attempt) — is also a row of ``<data_dir>/jobs.db`` until it ends; a process that starts takes over the rows of
processes that are no longer running and queues them again, due when they were due, with their attempt counts and
keys.  Periodic jobs are not journaled: every start queues them anew.

Rows belong to the runner that wrote them (``owner``: host, pid, the process's start time — so that a reused pid
is not mistaken for the old process — and the runner); a runner that stops in order releases its rows (owner
``''``).  Several worker processes share the file; each takes over only released rows and those of processes that
are gone, in one ``UPDATE`` per owner, so two starting runners never both take the same job.  A job that was
running when its process stopped runs again (at least once, like a Celery task whose worker died).
The file is SQLite in WAL mode with ``synchronous = NORMAL``: a job survives the process being killed; a power
failure may lose the last jobs accepted (they are rebuilt by the periodic sweeps where the work is in the store).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from fhir_server.jobs.registry import JobArg

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL, due REAL NOT NULL,
  key TEXT, attempt INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
"""


@dataclass(frozen=True)
class JournaledJob:
    id: int
    name: str
    args: tuple[JobArg, ...]
    due: float
    key: str | None
    attempt: int


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}:{uuid.uuid4().hex[:12]}"


def _gone(owner: str) -> bool:
    """Whether the rows of ``owner`` are free: released, or written by a process that has ended (rows of a
    process on another host sharing the directory are never taken)."""
    if owner == "":
        return True
    try:
        host, pid, started, _runner = owner.rsplit(":", 3)
        int(pid)
    except ValueError:
        return True  # not an owner this code writes: nobody will come back for it
    if host != socket.gethostname():
        return False
    return _start_time(int(pid)) != started if started != "?" else not Path(f"/proc/{pid}").exists()


class JobJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.owner = _owner_of(os.getpid())
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        self._db = db
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)  # job arguments are ids, but ids of patients' records

    def close(self) -> None:
        """Release this runner's rows (the next runner to start takes them over) and close."""
        if self._db is not None:
            with self._lock:
                self._db.execute("UPDATE jobs SET owner = '' WHERE owner = ?", (self.owner,))
            self._db.close()
            self._db = None

    def add(self, name: str, args: tuple[JobArg, ...], due: float, key: str | None, attempt: int = 1) -> int:
        with self._lock:
            cursor = self._conn().execute(
                "INSERT INTO jobs (owner, name, args, due, key, attempt) VALUES (?, ?, ?, ?, ?, ?)",
                (self.owner, name, json.dumps(list(args)), due, key, attempt))
            return int(cursor.lastrowid or 0)

    def again(self, job_id: int, due: float, attempt: int) -> None:
        with self._lock:
            self._conn().execute("UPDATE jobs SET due = ?, attempt = ? WHERE id = ?", (due, attempt, job_id))

    def done(self, job_id: int) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def take_over(self) -> list[JournaledJob]:
        """The jobs of processes that are gone, now this process's (soonest first)."""
        db = self._conn()
        with self._lock:
            owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM jobs WHERE owner != ?", (self.owner,))]
            for owner in owners:
                if _gone(owner):
                    db.execute("UPDATE jobs SET owner = ? WHERE owner = ?", (self.owner, owner))
            rows = db.execute("SELECT id, name, args, due, key, attempt FROM jobs WHERE owner = ? ORDER BY due, id",
                              (self.owner,)).fetchall()
        return [JournaledJob(int(i), str(n), tuple(json.loads(a)), float(d), k, int(t)) for i, n, a, d, k, t in rows]

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the job journal is not open")
        return self._db

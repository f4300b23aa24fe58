"""The MongoDB server the MongoDB backend's tests run against.

* ``FHIR_TEST_MONGODB_URL`` set: that server (a replica set or sharded cluster, so with transactions).
* Otherwise the emulator: mongo-java-server (in memory, MongoDB wire protocol), built by ``make emulator`` into
  ``.venv/emulators`` and started here on a free loopback port for the test session.  It has no sessions, so no
  multi-document transactions: the repository runs with ``transactions=False`` and the tests that need
  transactions are skipped with the reason below (docs/mongodb.md lists them).

Without a JDK the emulator cannot run: its tests are skipped with the reason, except under ``CI=true``, where
that is a failure.  Each repository gets a database of its own, dropped when it closes.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from fhir_server.storage.mongo.repository import MongoRepository

ROOT = Path(__file__).resolve().parent.parent
EMULATOR = ROOT / ".venv" / "emulators" / "mongo-java-server"
NO_TRANSACTIONS = (
    "the MongoDB emulator (mongo-java-server 1.47) has no sessions, hence no multi-document transactions; "
    "set FHIR_TEST_MONGODB_URL to a replica set to run this test"
)


@dataclass(frozen=True)
class MongoTarget:
    url: str
    emulated: bool

    @property
    def transactions(self) -> bool:
        return not self.emulated

    @property
    def name(self) -> str:
        return "mongo-java-server emulator" if self.emulated else "MongoDB"

    def repository(self) -> MongoRepository:
        """A repository on a fresh database of its own (``close()`` it, then ``drop_database()`` happens)."""
        return TestMongoRepository(self.url, database=f"t{uuid.uuid4().hex[:16]}", transactions=self.transactions)


class TestMongoRepository(MongoRepository):
    async def close(self) -> None:
        try:
            await self.drop()
        finally:
            await super().close()


class _Emulator:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.error: str | None = None
        self.log: IO[bytes] | None = None
        self.lock = threading.Lock()

    def start(self) -> str:
        with self.lock:
            if self.url is None and self.error is None:
                try:
                    self.url = self._start()
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    self.error = str(exc)
            if self.url is None:
                raise RuntimeError(self.error)
            return self.url

    def _start(self) -> str:
        if not (EMULATOR / ".built").exists():
            built = subprocess.run(["make", "-s", "emulator"], cwd=ROOT, capture_output=True, text=True)
            if not (EMULATOR / ".built").exists():
                raise RuntimeError(f"the MongoDB emulator is not built (make emulator: {built.stdout[-500:]}"
                                   f"{built.stderr[-500:]})")
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java is not installed: the MongoDB emulator cannot run")
        classpath = (EMULATOR / "classpath.txt").read_text().strip()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.log = tempfile.NamedTemporaryFile(prefix="mongo-emulator-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [java, "-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
             f"{EMULATOR / 'classes'}{os.pathsep}{classpath}", "MongoEmulator", str(port)],
            stdout=subprocess.PIPE, stderr=self.log,
        )
        atexit.register(self.stop)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else b""  # "listening" once bound (EOF if it died)
        if b"listening" not in line:
            err = Path(self.log.name).read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"the MongoDB emulator did not start: {err[-1000:]}")
        return f"mongodb://127.0.0.1:{port}/"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.log is not None:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)


_EMULATOR = _Emulator()


def mongo_target() -> MongoTarget:
    """The server to test against, started on first use; skips (fails with ``CI=true``) when there is none."""
    url = os.environ.get("FHIR_TEST_MONGODB_URL")
    if url:
        return MongoTarget(url, emulated=False)
    try:
        return MongoTarget(_EMULATOR.start(), emulated=True)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the MongoDB emulator: {exc}")
        pytest.skip(f"no MongoDB to test against: {exc}")


"""Shared fixtures: an in-process app with a temporary store, an HTTP client, a live server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.settings import Settings, StorageSettings

ROOT = Path(__file__).resolve().parent.parent

# Access tokens are required by default (FHIR_AUTH__ENABLED=true).  Tests that are not about authorization run
# with it off, as local development does: Settings() made anywhere in the suite, and the servers the tests start
# (which inherit this environment), see it.  The authorization tests (tests/auth/) turn it on explicitly.
os.environ.setdefault("FHIR_AUTH__ENABLED", "false")
# The MLLP listener (default port 2575) is off in tests: several suites run at once on one machine.  The HL7
# tests (tests/hl7_adapters/) start it on an ephemeral port.
os.environ.setdefault("FHIR_HL7__ENABLED", "false")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    from fhir_server.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, data_dir: Path, workers: int = 1) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.data_dir = data_dir
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FHIR_DEMO": "false"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--workers", str(self.workers)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited: {err[-2000:]}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "live")
    server.start()
    try:
        yield server
    finally:
        server.stop()

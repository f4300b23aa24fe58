"""Starting ``infirmary serve`` for a benchmark: one function, so that every benchmark starts it the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def serve(data_dir: Path, port: int, *, auth: bool = False, workers: int = 1,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A server on ``port`` over ``data_dir``, answering ``/fhir/metadata``; no demo data, no MLLP listener (port
    2575 may be taken: bench/hl7_oru.py starts its own).  ``auth`` off is loopback-only local development;
    bench/auth_overhead.py measures what tokens cost."""
    environment = {**os.environ, "FHIR_LOG_LEVEL": "warning", "FHIR_DEMO": "false", "FHIR_HL7__ENABLED": "false",
                   "FHIR_AUTH__ENABLED": str(auth).lower(), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--workers", str(workers), "--no-demo"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)

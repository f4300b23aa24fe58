"""Search at hospital scale (issue 3): Synthea cloned to N patients (≈274 resources each) plus M extra
Patient resources in SQLite, then p50/p99 of the target queries at 1 and 16 concurrent clients over HTTP (wrk).

    python bench/search_scale.py --patients 10000 --extra-patients 100000 --data-dir /tmp/infirmary-scale
    python bench/search_scale.py --data-dir /tmp/infirmary-scale --skip-load      # queries only

Loading writes through the server's own validation and indexing (in-process, batched), not over HTTP; the
ingest benchmark of the Bundles issue measures HTTP ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthea

ROOT = Path(__file__).resolve().parent.parent
BATCH = 400


async def load(data_dir: Path, patients: int, extra: int, part: int = 0, parts: int = 1) -> None:
    """Load clone ``n`` (and extra patient ``n``) when ``n % parts == part``: several processes can share the
    work (each validates and indexes on its own core; SQLite serialises their commits)."""
    from fhir_server.app import create_app
    from fhir_server.errors import FhirError
    from fhir_server.settings import Settings

    app = create_app(Settings(data_dir=data_dir))
    ctx = app.state.fhir
    await ctx.repo.open()
    services = ctx.resources
    done = 0
    started = time.perf_counter()
    pending: asyncio.Task[Any] | None = None
    batch: list[Any] = []

    async def flush() -> None:
        nonlocal pending, batch
        if pending is not None:
            await pending
        ops, batch = batch, []
        pending = asyncio.create_task(ctx.repo.write(ops))

    rejected = 0

    def add(resource: dict[str, Any]) -> None:
        nonlocal rejected
        try:
            op = services._prepare(resource["resourceType"], resource)  # validation + indexing, as on any write
        except FhirError as exc:
            rejected += 1
            if rejected <= 5:
                print(f"\nrejected {resource['resourceType']}: {exc.diagnostics}")
            return
        op.method, op.id = "create", resource["id"]
        batch.append(op)

    families: list[dict[str, Any]] = []
    for n, bundle in enumerate(synthea.clones(patients, resolved=True, part=part, parts=parts)):
        for resource in synthea.resources_of(bundle):
            add(resource)
            if resource["resourceType"] == "Patient" and len(families) < 200:
                families.append(resource)
            done += 1
            if len(batch) >= BATCH:
                await flush()
        if n % 50 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"\r{done:,} resources, {rate:,.0f}/s", end="", flush=True)
    for n in range(part, extra, parts):
        template = families[n % len(families)]
        patient = json.loads(json.dumps(template))
        patient["id"] = f"extra-{n}"
        for ident in patient.get("identifier", []):
            ident["value"] = f"{ident.get('value', '')}-x{n}"
        add(patient)
        done += 1
        if len(batch) >= BATCH:
            await flush()
    await flush()
    if pending is not None:
        await pending
    elapsed = time.perf_counter() - started
    print(f"\nloaded {done - rejected:,} resources ({rejected} rejected) in {elapsed:,.0f} s "
          f"({done / elapsed:,.0f}/s)")
    await ctx.repo.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, workers: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "serve", "--port", str(self.port), "--data-dir", str(data_dir),
             "--workers", str(workers), "--no-demo"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "FHIR_LOG_LEVEL": "warning",
             "FHIR_AUTH__ENABLED": "false", "FHIR_HL7__ENABLED": "false"},  # loopback only; bench/auth_overhead.py measures auth
        )
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        for _ in range(600):
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.rss_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        total = 0
        pids = [self.proc.pid] + [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()]
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.rss_peak = max(self.rss_peak, self._rss())

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(20)


def sample_values(data_dir: Path) -> dict[str, list[str]]:
    """Real values from the store to put in the queries (common family names, identifiers, patients with
    observations, common codes)."""
    import sqlite3

    conn = sqlite3.connect(data_dir / "infirmary.db")
    pid = dict(((t, c), p) for p, t, c in conn.execute("SELECT pid, type, code FROM search_params"))
    fam = [r[0] for r in conn.execute(
        "SELECT norm, count(*) c FROM idx_string WHERE pid = ? GROUP BY norm ORDER BY c DESC LIMIT 20",
        (pid[("Patient", "family")],))]
    idents = [f"{s}|{c}" for s, c in conn.execute(
        "SELECT system, code FROM idx_token WHERE pid = ? AND system != '' ORDER BY random() LIMIT 500",
        (pid[("Patient", "identifier")],))]
    codes = [r[0] for r in conn.execute(
        "SELECT code, count(*) c FROM idx_token WHERE pid = ? GROUP BY code ORDER BY c DESC LIMIT 10",
        (pid[("Observation", "code")],))]
    obs_patients = [r[0] for r in conn.execute(
        "SELECT ref.id FROM idx_reference ref WHERE ref.pid = ? ORDER BY random() LIMIT 500",
        (pid[("Observation", "patient")],))]
    patient_ids = [r[0] for r in conn.execute(
        "SELECT id FROM resources WHERE type = 'Patient' AND id NOT LIKE 'extra-%' ORDER BY random() LIMIT 500")]
    conn.close()
    return {"family": fam, "identifier": idents, "code": codes, "obs_patient": obs_patients,
            "patient": patient_ids}


def queries(v: dict[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    common_code = v["code"][0]
    rnd = random.Random(7)
    return [
        ("Patient?name=<common family>&_count=20", "p50 ≤ 10 ms",
         [f"/fhir/Patient?name={f}&_count=20" for f in v["family"][:10]]),
        ("Patient?identifier=sys|value", "p50 ≤ 5 ms",
         [f"/fhir/Patient?identifier={i}" for i in v["identifier"]]),
        ("Observation?patient=<id>&code=<loinc>&_sort=-date", "p50 ≤ 10 ms",
         [f"/fhir/Observation?patient={p}&code=http://loinc.org|{rnd.choice(v['code'][:5])}&_sort=-date"
          for p in v["obs_patient"]]),
        ("Observation?code=<common loinc>&_summary=count", "≥ 2M matches counted/s",
         [f"/fhir/Observation?code=http://loinc.org|{common_code}&_summary=count"]),
        ("Encounter?subject.name=<family>&date=ge2020", "p50 ≤ 50 ms",
         [f"/fhir/Encounter?subject.name={f}&date=ge2020" for f in v["family"][:10]]),
        ("Patient?_has:Observation:patient:code=<loinc>", "first page ≤ 100 ms",
         [f"/fhir/Patient?_has:Observation:patient:code={c}" for c in v["code"][:5]]),
        ("Patient?_id=<id>&_revinclude=Observation:patient", "p50 ≤ 50 ms",
         [f"/fhir/Patient?_id={p}&_revinclude=Observation:patient" for p in v["patient"]]),
    ]


LUA = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"non2xx\\": %%d, \\"p50\\": %%f, \\"p99\\": %%f}\\n",
    summary.requests, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(port: int, paths: list[str], connections: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % ", ".join(json.dumps(p) for p in paths))
    out = subprocess.run(["wrk", "-t", "1" if connections == 1 else "2", "-c", str(connections), "-d",
                          f"{seconds}s", "--timeout", "30s", "-s", f.name, f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    stats = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    stats["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return stats


def _load_part(data_dir: str, patients: int, extra: int, part: int, parts: int) -> None:
    if part:
        time.sleep(3)  # let the first process create the schema
    asyncio.run(load(Path(data_dir), patients, extra, part, parts))


def _load_in_processes(args: argparse.Namespace) -> None:
    import multiprocessing

    parts = max(1, args.load_processes)
    started = time.perf_counter()
    procs = [multiprocessing.Process(target=_load_part, args=(str(args.data_dir), args.patients,
                                                               args.extra_patients, k, parts))
             for k in range(parts)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a loader process failed ({p.exitcode})")
    print(f"\nload finished in {time.perf_counter() - started:,.0f} s with {parts} processes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--extra-patients", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--load-processes", type=int, default=2)
    args = parser.parse_args()
    if not args.skip_load:
        if args.data_dir.exists():
            shutil.rmtree(args.data_dir)
        _load_in_processes(args)
    db = args.data_dir / "infirmary.db"
    import sqlite3

    conn = sqlite3.connect(db)
    resources = conn.execute("SELECT count(*) FROM resources").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    print(f"store: {resources:,} resources, {size / 1e9:.2f} GB, {size / 1e6 / (resources / 1e6):,.0f} MB per "
          "million resources")
    values = sample_values(args.data_dir)
    server = Server(args.data_dir, args.workers)
    try:
        rows = []
        for name, target, paths in queries(values):
            if "_summary=count" in name:
                r = httpx.get(server.base.replace("/fhir", "") + paths[0], timeout=120).json()
                matches = r.get("total", 0)
            for connections in (1, 16):
                s = run_wrk(server.port, paths, connections, args.seconds)
                extra = ""
                if "_summary=count" in name:
                    extra = f", {matches:,} matches → {matches * s['rps'] / 1e6:,.1f} M counted/s"
                rows.append((name, target, connections, s, extra))
                print(f"{name:52s} c={connections:<2d} p50 {s['p50']:8.2f} ms  p99 {s['p99']:8.2f} ms  "
                      f"{s['rps']:8.0f} req/s  non-2xx {s['non2xx']}{extra}", flush=True)
        print(f"server RSS peak: {server.rss_peak / 1e6:,.0f} MB ({args.workers} workers)")
        print("\n| query | target | clients | p50 ms | p99 ms | req/s | notes |\n|---|---|---|---|---|---|---|")
        for name, target, connections, s, extra in rows:
            print(f"| `{name}` | {target} | {connections} | {s['p50']:.2f} | {s['p99']:.2f} | {s['rps']:.0f} | "
                  f"{extra.lstrip(', ')} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

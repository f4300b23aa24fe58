"""REST throughput and latency: create, read and update over HTTP, with 1 and 32 concurrent clients.

Starts ``infirmary serve`` on a fresh store, seeds patients, and drives it with ``wrk`` (the load generator on the
same machine).  Prints one line per scenario and a Markdown table to paste into docs/benchmarks.md.

    python bench/rest_crud.py [--workers 1] [--duration 10] [--seed 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import serve

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://infirmary.example.org/mrn", "value": "MRN-0"}],
    "active": True,
    "name": [{"use": "official", "family": "Okafor", "given": ["Chioma", "Ada"]}],
    "telecom": [{"system": "phone", "value": "+1-555-0101", "use": "home"}],
    "gender": "female",
    "birthDate": "1984-03-12",
    "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "01101", "country": "US"}],
}

LUA_READ = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/fhir/Patient/p" .. math.random(0, %(n)d - 1))
end
"""
LUA_CREATE = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = [[%(body)s]]
request = function() return wrk.format(nil, "/fhir/Patient") end
"""
LUA_UPDATE = """
math.randomseed(os.time())
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/fhir+json"
local template = [[%(body)s]]
request = function()
  local id = "p" .. math.random(0, %(n)d - 1)
  return wrk.format(nil, "/fhir/Patient/" .. id, nil, (template:gsub("__ID__", id)))
end
"""
LUA_DONE = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"non2xx\\": %d, \\"errors\\": %d, \\"p50\\": %f, \\"p99\\": %f}\\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    return serve(data_dir, port, workers=workers)


async def seed(base: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        sem = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            body = {**PATIENT, "id": f"p{i}", "identifier": [{"system": PATIENT["identifier"][0]["system"],
                                                               "value": f"MRN-{i}"}]}
            async with sem:
                r = await client.put(f"/Patient/p{i}", json=body, headers={"Content-Type": "application/fhir+json"})
                r.raise_for_status()

        await asyncio.gather(*(put(i) for i in range(n)))


def wrk(port: int, script: str, connections: int, duration: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + LUA_DONE)
        path = f.name
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", path,
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(path)
    stats = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    stats["rps"] = rps
    return stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--seed", type=int, default=10_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    data_dir = Path(tempfile.mkdtemp(prefix="infirmary-bench-"))
    port = free_port()
    proc = start_server(data_dir, port, args.workers)
    try:
        t0 = time.perf_counter()
        asyncio.run(seed(f"http://127.0.0.1:{port}/fhir", args.seed))
        print(f"seeded {args.seed} patients in {time.perf_counter() - t0:.1f} s")
        body = json.dumps(PATIENT)
        update_body = json.dumps({**PATIENT, "id": "__ID__"})
        scenarios = [
            ("read", LUA_READ % {"n": args.seed}),
            ("create", LUA_CREATE % {"body": body}),
            ("update", LUA_UPDATE % {"body": update_body, "n": args.seed}),
        ]
        rows = []
        for name, script in scenarios:
            for connections in (1, 32):
                s = wrk(port, script, connections, args.duration)
                rows.append((name, connections, s))
                print(f"{name:7s} c={connections:<3d} {s['rps']:9.0f} req/s  p50 {s['p50']:6.2f} ms  "
                      f"p99 {s['p99']:6.2f} ms  non-2xx {s['non2xx']}  errors {s['errors']}", flush=True)
        db = data_dir / "infirmary.db"
        print(f"\nstore: {db.stat().st_size / 1e6:.1f} MB after the run")
        print("\n| interaction | clients | workers | req/s | p50 ms | p99 ms | non-2xx |")
        print("|---|---|---|---|---|---|---|")
        for name, connections, s in rows:
            print(f"| {name} | {connections} | {args.workers} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} "
                  f"| {s['non2xx']} |")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

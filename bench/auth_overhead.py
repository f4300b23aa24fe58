"""What authorization costs: read throughput with access tokens versus auth disabled, and token endpoint requests/s.

Starts ``infirmary serve`` twice on the same seeded store — once with ``FHIR_AUTH__ENABLED=false``, once with
tokens required — and drives it with ``wrk`` (1 and 32 connections):

* ``read Practitioner``: a resource that is not patient data — token validation, policy and the scoped
  repository, no AuditEvent;
* ``read Patient``: patient data — the same plus one AuditEvent per read (queued, written in batches).

The token is a Backend Services token (``system/Patient.rs system/Practitioner.rs``).  Then the token endpoint:
``client_credentials`` with ``private_key_jwt`` (RS384), each request with its own pre-signed client assertion
(every ``jti`` is used once), at 1 and 16 connections.

    python bench/auth_overhead.py [--duration 6] [--seed 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_crud import PATIENT, free_port, wrk

ROOT = Path(__file__).resolve().parent.parent
SCOPE = "system/Patient.cruds system/Practitioner.cruds system/AuditEvent.rs"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

LUA_READ = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/fhir/%(type)s/" .. "%(prefix)s" .. math.random(0, %(n)d - 1), %(headers)s)
end
"""
# every thread takes its own lines of the file of pre-signed token requests (an assertion works once)
LUA_TOKEN = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bodies = {}
  local n = 0
  for line in io.lines("%(path)s") do
    if n %% %(threads)d == id then table.insert(bodies, line) end
    n = n + 1
  end
  i = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
request = function()
  i = i + 1
  return wrk.format(nil, "/auth/token", nil, bodies[i])
end
"""


def start(data_dir: Path, port: int, auth: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FHIR_LOG_LEVEL": "warning", "FHIR_AUTH__ENABLED": str(auth).lower(),
           "FHIR_AUTH__SYSTEM_ACCESS_TOKEN_LIFETIME_S": "3600"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--no-demo"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def register(data_dir: Path, key: RSAKey) -> None:
    jwks = data_dir / "bench-jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    subprocess.run([sys.executable, "-m", "fhir_server", "clients", "add", "--name", "bench", "--client-id",
                    "bench", "--auth", "private_key_jwt", "--scope", SCOPE, "--jwks-file", str(jwks),
                    "--grant-type", "client_credentials", "--data-dir", str(data_dir)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "FHIR_DATA_DIR": str(data_dir)})


def token_request(key: RSAKey, token_url: str, scope: str = "system/Patient.rs") -> str:
    now = int(time.time())
    claims = {"iss": "bench", "sub": "bench", "aud": token_url, "exp": now + 290, "jti": uuid.uuid4().hex}
    assertion = jwt.encode({"alg": "RS384", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["RS384"])
    return httpx.QueryParams({"grant_type": "client_credentials", "scope": scope,
                              "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}).__str__()


async def seed(base: str, n: int, token: str | None) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:
        sem = asyncio.Semaphore(16)

        async def put(kind: str, i: int) -> None:
            if kind == "Patient":
                body = {**PATIENT, "id": f"p{i}"}
            else:
                body = {"resourceType": "Practitioner", "id": f"pr{i}", "name": [{"family": f"Doc{i}"}]}
            async with sem:
                (await client.put(f"/{kind}/{body['id']}", json=body)).raise_for_status()

        await asyncio.gather(*(put(kind, i) for kind in ("Patient", "Practitioner") for i in range(n)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--token-requests", type=int, default=3000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    data_dir = Path(tempfile.mkdtemp(prefix="infirmary-auth-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = RSAKey.generate_key(2048, {"kid": "bench-1"}, private=True)
    register(data_dir, key)
    rows: list[tuple[str, str, int, dict[str, float]]] = []
    try:
        # tokens on: seed, then read
        proc = start(data_dir, port, auth=True)
        try:
            token = httpx.post(f"{base}/auth/token", content=token_request(key, f"{base}/auth/token", SCOPE),
                               headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
            access = token["access_token"]
            t0 = time.perf_counter()
            asyncio.run(seed(f"{base}/fhir", args.seed, access))
            print(f"seeded {args.seed} Patients and {args.seed} Practitioners in {time.perf_counter() - t0:.1f} s")
            on = _reads(port, args, f'{{["Authorization"] = "Bearer {access}"}}')
            rows += [("tokens", *r) for r in on]
            lines = [token_request(key, f"{base}/auth/token") for _ in range(args.token_requests)]
            path = data_dir / "token-requests.txt"
            path.write_text("\n".join(lines) + "\n")
            for connections in (1, 16):
                threads = 1 if connections == 1 else 2
                script = LUA_TOKEN % {"path": path, "threads": threads}
                s = wrk(port, script, connections, max(2, args.duration // 2))
                rows.append(("tokens", "token endpoint", connections, s))
                _print(rows[-1])
                lines = [token_request(key, f"{base}/auth/token") for _ in range(args.token_requests)]
                path.write_text("\n".join(lines) + "\n")
        finally:
            stop(proc)
        # tokens off: the same store, the same reads
        proc = start(data_dir, port, auth=False)
        try:
            rows += [("off", *r) for r in _reads(port, args, "nil")]
        finally:
            stop(proc)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print("\n| auth | scenario | clients | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for mode, name, connections, s in rows:
        print(f"| {mode} | {name} | {connections} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | "
              f"{s['non2xx']} |")
    by = {(m, n, c): s["rps"] for m, n, c, s in rows}
    for name in ("read Practitioner", "read Patient"):
        for connections in (1, 32):
            off, on = by.get(("off", name, connections)), by.get(("tokens", name, connections))
            if off and on:
                print(f"{name}, {connections} clients: tokens {100 * (off - on) / off:+.1f}% slower")


def _reads(port: int, args: argparse.Namespace, headers: str) -> list[tuple[str, int, dict[str, float]]]:
    out = []
    for name, rtype, prefix in (("read Practitioner", "Practitioner", "pr"), ("read Patient", "Patient", "p")):
        script = LUA_READ % {"type": rtype, "prefix": prefix, "n": args.seed, "headers": headers}
        for connections in (1, 32):
            s = wrk(port, script, connections, args.duration)
            out.append((name, connections, s))
            _print(("", name, connections, s))
    return out


def _print(row: tuple[str, str, int, dict[str, float]]) -> None:
    mode, name, connections, s = row
    print(f"{mode:6s} {name:18s} c={connections:<3d} {s['rps']:8.0f} req/s  p50 {s['p50']:6.2f} ms  "
          f"p99 {s['p99']:6.2f} ms  non-2xx {s['non2xx']}  errors {s['errors']}", flush=True)


if __name__ == "__main__":
    main()

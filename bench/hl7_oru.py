"""HL7 v2 ingest: ORU^R01 messages acknowledged (AA) per second, each durably written before its ACK.

Starts a real ``infirmary serve`` (SQLite default, ``synchronous=FULL``, authorization on as in production: the
listener writes through the scoped repository as its system identity and every message is audited) with the
MLLP listener on a free port, then sends ORU^R01 messages over 1 connection (one at a time: send, wait for the
AA, send the next) and over 8 connections at once. Every message is distinct (its own control id, filler order
number and values) and is applied as one transaction: the patient (conditional create by MRN, 200 patients in
rotation), the ServiceRequest (matched or created by placer number), the DiagnosticReport, 3 Observations and the
message log entry.

    python bench/hl7_oru.py [--messages 2000] [--connections 1 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hl7_adapters.mllp.client import MllpClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def oru(n: int, run: str) -> bytes:
    patient = n % 200
    return (
        f"MSH|^~\\&|LIS|LAB|INFIRMARY|HOSP|20240105120000+0100||ORU^R01^ORU_R01|{run}-{n}|P|2.5.1\r"
        f"PID|1||MRN{patient:05d}^^^HOSP^MR||Patient{patient}^Test||19700101|F\r"
        f"OBR|1|PL{run}{n}^INFIRMARY|FL{run}{n}^LAB|24331-1^Lipid panel^LN|||20240105110000|||||||||||||||"
        f"20240105115500||CH|F\r"
        f"OBX|1|NM|2093-3^Cholesterol^LN||{150 + n % 50}|mg/dL^mg/dL^UCUM|<200|N|||F|||20240105115000\r"
        f"OBX|2|NM|2571-8^Triglyceride^LN||{100 + n % 90}|mg/dL^mg/dL^UCUM|<150|N|||F|||20240105115000\r"
        f"OBX|3|NM|2085-9^HDL Cholesterol^LN||{40 + n % 30}|mg/dL^mg/dL^UCUM|>40|L|||F|||20240105115000\r"
    ).encode()


async def run(port: int, connections: int, messages: int, run_id: str) -> tuple[float, list[float], int]:
    per = messages // connections
    latencies: list[float] = []
    failures = 0

    async def one(c: int) -> None:
        nonlocal failures
        async with MllpClient("127.0.0.1", port, timeout_s=60) as client:
            for i in range(per):
                started = time.perf_counter()
                answer = await client.send(oru(c * per + i, run_id))
                latencies.append(time.perf_counter() - started)
                if b"MSA|AA|" not in answer:
                    failures += 1
                    if failures < 3:
                        print("  not AA:", answer.decode(errors="replace").replace("\r", " / ")[:300])

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(connections)))
    return time.perf_counter() - started, latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="infirmary-hl7-bench-"))
    http_port, mllp_port = free_port(), free_port()
    env = {**os.environ, "FHIR_AUTH__ENABLED": "true", "FHIR_HL7__ENABLED": "true",
           "FHIR_HL7__PORT": str(mllp_port), "FHIR_DEMO": "false", "FHIR_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(http_port),
                               "--data-dir", str(data), "--workers", str(args.workers)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", mllp_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        print(f"infirmary serve (workers={args.workers}, auth on, SQLite synchronous=FULL), MLLP :{mllp_port}")
        asyncio.run(run(mllp_port, 1, args.warmup, "warm"))
        for connections in args.connections:
            elapsed, latencies, failures = asyncio.run(run(mllp_port, connections, args.messages, f"c{connections}"))
            done = len(latencies)
            latencies.sort()
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
            print(f"ORU^R01 over {connections} connection(s): {done} messages in {elapsed:.1f} s = "
                  f"{done / elapsed:,.0f} acknowledged/s  (p50 {p50:.1f} ms, p99 {p99:.1f} ms, not AA: {failures})")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

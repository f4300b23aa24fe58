"""Subscription notification latency: from a matching write's response to the notification's arrival.

Starts ``infirmary serve`` (auth off, http endpoints on loopback allowed) on a fresh store, creates ``--others``
Subscriptions on Observation that do not match (every write evaluates them) and one rest-hook and one websocket
Subscription that match, then writes ``--writes`` matching Observations one after another and measures, for each,
the time from sending the write to the rest-hook POST arriving at a local endpoint and to the websocket ``ping``.
Target (issue 7): a notification within 1 s.

    python bench/subscriptions.py [--writes 200] [--others 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_crud import free_port

ROOT = Path(__file__).resolve().parent.parent
FHIR_JSON = {"Content-Type": "application/fhir+json"}


class Endpoint:
    """The rest-hook receiver: records arrival times."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.arrived = asyncio.Event()
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.2)  # the handlers see their connections closed and return

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                self.arrivals.append(time.perf_counter())
                self.arrived.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        finally:
            self.writers.discard(writer)


def observation(code: str) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}


def subscription(code: str, channel: dict[str, object]) -> dict[str, object]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "bench",
            "criteria": f"Observation?code=http://loinc.org|{code}", "channel": channel}


def summary(name: str, values: list[float]) -> None:
    ms = sorted(v * 1000 for v in values)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    print(f"{name:<28} n={len(ms):4d}  p50 {statistics.median(ms):7.1f} ms  p95 {pick(0.95):7.1f} ms  "
          f"p99 {pick(0.99):7.1f} ms  max {ms[-1]:7.1f} ms")


async def run(base: str, args: argparse.Namespace) -> None:
    endpoint = Endpoint()
    await endpoint.start()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(300):
            try:
                if (await http.get("metadata")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        await measure(http, endpoint, base, args)
    await endpoint.stop()


async def measure(http: httpx.AsyncClient, endpoint: Endpoint, base: str, args: argparse.Namespace) -> None:
    for i in range(args.others):
        await http.post("Subscription", json=subscription(f"other-{i}", {"type": "websocket"}), headers=FHIR_JSON)
    hook = {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{endpoint.port}/hook"}
    await http.post("Subscription", json=subscription("1234-5", hook), headers=FHIR_JSON)
    ws_sub = (await http.post("Subscription", json=subscription("1234-5", {"type": "websocket"}),
                              headers=FHIR_JSON)).json()["id"]
    await asyncio.wait_for(endpoint.arrived.wait(), 10)  # the handshake
    hook_latency: list[float] = []
    ws_latency: list[float] = []
    write_time: list[float] = []
    ws_url = base.replace("http://", "ws://") + "/$websocket"
    async with connect(ws_url) as ws:
        await ws.send(f"bind {ws_sub}")
        assert await ws.recv() == f"bound {ws_sub}"
        for _ in range(args.writes):
            count = len(endpoint.arrivals)
            endpoint.arrived.clear()
            sent = time.perf_counter()
            response = await http.post("Observation", json=observation("1234-5"), headers=FHIR_JSON)
            written = time.perf_counter()
            assert response.status_code == 201
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if message == f"ping {ws_sub}":
                    ws_latency.append(time.perf_counter() - sent)
                    break
            while len(endpoint.arrivals) <= count:
                await asyncio.wait_for(endpoint.arrived.wait(), 10)
                endpoint.arrived.clear()
            hook_latency.append(endpoint.arrivals[count] - sent)
            write_time.append(written - sent)
    print(f"Subscription notification latency ({args.writes} matching writes, {args.others} other "
          "Subscriptions on the type; from sending the write to arrival)")
    summary("write (POST Observation)", write_time)
    summary("rest-hook POST arrives", hook_latency)
    summary("websocket ping arrives", ws_latency)
    print(json.dumps({"rest_hook_p50_ms": round(statistics.median(hook_latency) * 1000, 1),
                      "rest_hook_max_ms": round(max(hook_latency) * 1000, 1),
                      "websocket_p50_ms": round(statistics.median(ws_latency) * 1000, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--others", type=int, default=100)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "FHIR_AUTH__ENABLED": "false", "FHIR_HL7__ENABLED": "false", "FHIR_DEMO": "false",
               "FHIR_SUBSCRIPTIONS__ALLOW_HTTP_LOOPBACK": "true"}
        proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--data-dir",
                                 data], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(run(f"http://127.0.0.1:{port}/fhir", args))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

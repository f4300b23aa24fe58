"""Crash safety: transaction Bundles streamed at a server that is killed with SIGKILL at random moments.

After every restart, each Bundle that was answered 200 is wholly present and no Bundle is partly present.  Every
resource of Bundle ``n`` carries the tag ``n``, so one search per Bundle counts what of it is stored.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from fhir_server import jsonio
from tests.conftest import LiveServer

TAG = "https://infirmary.example.org/crash-test"
PER_BUNDLE = 40  # 1 Patient + 39 Observations
KILLS = 12


def _bundle(n: int) -> bytes:
    tag = {"meta": {"tag": [{"system": TAG, "code": str(n)}]}}
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
    entries: list[dict[str, Any]] = [{
        "fullUrl": patient_url,
        "resource": {"resourceType": "Patient", **tag, "identifier": [{"system": TAG, "value": f"p-{n}"}],
                     "name": [{"family": f"Crash{n}"}]},
        "request": {"method": "POST", "url": "Patient"},
    }]
    for k in range(PER_BUNDLE - 1):
        entries.append({
            "resource": {"resourceType": "Observation", **tag, "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": patient_url},
                         "valueQuantity": {"value": k, "unit": "/min", "system": "http://unitsofmeasure.org",
                                           "code": "/min"}},
            "request": {"method": "POST", "url": "Observation"},
        })
    return jsonio.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


class _Streamer:
    """Client threads posting numbered Bundles until the server dies; records which got a 200."""

    def __init__(self, base: str, counter: list[int], lock: threading.Lock) -> None:
        self.base = base
        self.counter = counter
        self.lock = lock
        self.sent: list[int] = []
        self.acknowledged: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                with self.lock:
                    n = self.counter[0]
                    self.counter[0] += 1
                self.sent.append(n)
                try:
                    resp = client.post(self.base, content=_bundle(n),
                                       headers={"Content-Type": "application/fhir+json"})
                except httpx.HTTPError:
                    return  # the server is gone: the outcome of n is unknown
                if resp.status_code == 200:
                    self.acknowledged.append(n)
                else:
                    return


def _present(client: httpx.Client, base: str, n: int) -> int:
    resp = client.get(base, params={"_type": "Patient,Observation", "_tag": f"{TAG}|{n}", "_summary": "count",
                                    "_total": "accurate"})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def test_sigkill_never_loses_an_acknowledged_bundle_or_leaves_half_of_one(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    server = LiveServer(tmp_path / "store")
    counter, lock = [0], threading.Lock()
    acknowledged: set[int] = set()
    sent: set[int] = set()
    kills = 0
    try:
        while kills < KILLS:
            server.start()
            streamers = [_Streamer(server.base, counter, lock) for _ in range(2)]
            threads = [threading.Thread(target=s.run, daemon=True) for s in streamers]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))  # a random moment, mid-stream
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait()
            kills += 1
            for s in streamers:
                s.stop.set()
            for t in threads:
                t.join(35)
            for s in streamers:
                acknowledged.update(s.acknowledged)
                sent.update(s.sent)

            server.start()  # recovery: every bundle so far is all there or not there at all
            with httpx.Client(timeout=30) as client:
                for n in sorted(sent):
                    count = _present(client, server.base, n)
                    if n in acknowledged:
                        assert count == PER_BUNDLE, f"bundle {n} was acknowledged but {count} of it is stored"
                    else:
                        assert count in (0, PER_BUNDLE), f"bundle {n} is partly stored ({count})"
            server.stop()
        assert len(acknowledged) > KILLS, "the client barely got anything through; the test proved little"
        assert sent - acknowledged, "no bundle was in flight at a kill; the test proved little"
    finally:
        server.stop()

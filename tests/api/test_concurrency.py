"""Concurrency facts, with real concurrent HTTP requests against a running server process.

* 20 identical concurrent If-None-Exist creates produce exactly one resource;
* concurrent updates of one resource get gapless, strictly increasing versions;
* read-modify-write with If-Match loses no update.

Each runs against one worker process and against two (two processes writing one SQLite file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fhir_server import jsonio
from tests.conftest import LiveServer
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
SYS = "https://infirmary.example.org/mrn"


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def server(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    live = LiveServer(tmp_path / "store", workers=request.param)
    live.start()
    yield live
    live.stop()


async def test_concurrent_conditional_creates_make_one_resource(server: LiveServer) -> None:
    patient = jsonio.dumps(make_patient(identifier=[{"system": SYS, "value": "RACE-1"}]))
    headers = {**FHIR, "If-None-Exist": f"identifier={SYS}|RACE-1"}
    async with httpx.AsyncClient(base_url=server.base, timeout=30,
                                 limits=httpx.Limits(max_connections=20)) as client:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await client.post("/Patient", content=patient, headers=headers)

        tasks = [asyncio.create_task(one()) for _ in range(20)]
        await asyncio.sleep(0.05)
        start.set()
        responses = await asyncio.gather(*tasks)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 19 + [201], statuses
        assert len({r.json()["id"] for r in responses}) == 1
        history = (await client.get("/Patient/_history")).json()
        assert history["total"] == 1


async def test_concurrent_updates_get_gapless_versions(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30,
                                 limits=httpx.Limits(max_connections=16)) as client:
        await client.put("/Patient/cc", content=jsonio.dumps(make_patient(id="cc")), headers=FHIR)

        async def writer(n: int) -> list[int]:
            versions = []
            for i in range(10):
                p = make_patient(id="cc", name=[{"family": f"W{n}-{i}"}])
                r = await client.put("/Patient/cc", content=jsonio.dumps(p), headers=FHIR)
                assert r.status_code == 200, r.text
                versions.append(int(r.json()["meta"]["versionId"]))
            return versions

        results = await asyncio.gather(*(writer(n) for n in range(16)))
        every = sorted(v for vs in results for v in vs)
        assert every == list(range(2, 162))  # gapless, each version given to exactly one writer
        for vs in results:
            assert vs == sorted(vs)  # each writer sees its versions strictly increase
        history = (await client.get("/Patient/cc/_history?_count=500")).json()
        assert history["total"] == 161
        assert [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]] == list(range(161, 0, -1))


async def test_if_match_read_modify_write_loses_no_update(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30,
                                 limits=httpx.Limits(max_connections=8)) as client:
        counter = {"resourceType": "Observation", "id": "ctr", "status": "final", "code": {"text": "counter"},
                   "valueInteger": 0}
        await client.put("/Observation/ctr", content=jsonio.dumps(counter), headers=FHIR)
        conflicts = 0

        async def incrementer() -> None:
            nonlocal conflicts
            done = 0
            while done < 5:
                current = await client.get("/Observation/ctr")
                resource = current.json()
                resource["valueInteger"] += 1
                r = await client.put("/Observation/ctr", content=jsonio.dumps(resource),
                                     headers={**FHIR, "If-Match": current.headers["etag"]})
                if r.status_code == 412:
                    conflicts += 1
                    continue
                assert r.status_code == 200, r.text
                done += 1

        await asyncio.gather(*(incrementer() for _ in range(8)))
        final = (await client.get("/Observation/ctr")).json()
        assert final["valueInteger"] == 40
        assert final["meta"]["versionId"] == "41"

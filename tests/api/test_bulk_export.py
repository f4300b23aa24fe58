"""FHIR Bulk Data Access 2.0 export: the async protocol step by step, the content of the files, the parameters,
Patient and Group cohorts, cancel, expiry, failure, and the Task that shows the job."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from fhir_server.services import _bulk_plan
from fhir_server.services.bulk_export import STALE_AFTER_S, BulkExport
from fhir_server.storage.base import Repository, SearchPage, SearchRequest
from tests.factories import make_observation, make_patient

FHIR = {"Content-Type": "application/fhir+json"}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
WEIGHT = "29463-7"
HEIGHT = "8302-2"


def service(app: Any) -> BulkExport:
    bulk: BulkExport = app.state.fhir.bulk_export
    return bulk


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", content=jsonio.dumps(resource),
                         headers=FHIR)
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def observation(id: str, subject: str, code: str = WEIGHT) -> dict[str, Any]:
    obs = make_observation(id=id, code={"coding": [{"system": "http://loinc.org", "code": code}]})
    obs["subject"] = {"reference": subject}
    return obs


@pytest.fixture
async def store(client: httpx.AsyncClient) -> dict[str, Any]:
    """Three patients with observations, a practitioner, an observation about a Location, a Group of two."""
    for i in range(3):
        await put(client, make_patient(id=f"p{i}"))
        await put(client, observation(f"w{i}", f"Patient/p{i}", WEIGHT))
        await put(client, observation(f"h{i}", f"Patient/p{i}", HEIGHT))
    await put(client, {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]})
    await put(client, observation("loc-obs", "Location/l1"))
    await put(client, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                       "member": [{"entity": {"reference": "Patient/p0"}},
                                  {"entity": {"reference": "Patient/p2"}}]})
    return {}


async def kick_off(client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> str:
    r = await client.get(path, headers={**ASYNC, **(headers or {})})
    assert r.status_code == 202, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    location: str = r.headers["Content-Location"]
    assert location.startswith("http://testserver/fhir/$export-status/")
    return location


async def complete(app: Any, client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    await app.state.fhir.runner.drain()
    r = await client.get(location)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    manifest: dict[str, Any] = r.json()
    return manifest


async def download(client: httpx.AsyncClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every output file, checked against its manifest entry: resources per type."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        r = await client.get(item["url"])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = r.content.splitlines()
        assert len(lines) == item["count"]
        resources = [json.loads(line) for line in lines]
        assert {res["resourceType"] for res in resources} == {item["type"]}
        out.setdefault(item["type"], []).extend(resources)
    return out


def ids(files: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    return {rtype: {r["id"] for r in resources} for rtype, resources in files.items()}


async def task_of(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    r = await client.get(f"/Task/{location.rsplit('/', 1)[1]}")
    assert r.status_code == 200
    task: dict[str, Any] = r.json()
    return task


class GatedRepository:
    """The real repository, with the export's page reads held at a gate the test opens (or failing, to inject a
    storage fault at a chosen page); everything else goes straight to the repository."""

    def __init__(self, inner: Repository, fail_at: int | None = None) -> None:
        self.inner = inner
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.pages = 0
        self.fail_at = fail_at

    async def search(self, request: SearchRequest) -> SearchPage:
        self.pages += 1
        if self.pages == 2:
            self.reached.set()
            await self.release.wait()
        if self.fail_at is not None and self.pages >= self.fail_at:
            raise sqlite3.OperationalError("disk I/O error")
        return await self.inner.search(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def gate(app: Any, monkeypatch: pytest.MonkeyPatch) -> GatedRepository:
    bulk = service(app)
    gated = GatedRepository(bulk.repo)
    monkeypatch.setattr(bulk, "repo", gated)
    monkeypatch.setattr("fhir_server.services.bulk_export.PAGE", 2)
    return gated


# -- the protocol -------------------------------------------------------------------------------------------------


async def test_async_protocol_step_by_step(app: Any, client: httpx.AsyncClient, store: Any,
                                           gate: GatedRepository) -> None:
    location = await kick_off(client, "/$export")
    task = await task_of(client, location)
    assert task["status"] == "in-progress"
    assert task["code"]["coding"][0]["code"] == "bulk-export"

    # while the job reads, polls answer 202 with progress and a retry delay
    await asyncio.wait_for(gate.reached.wait(), 10)
    r = await client.get(location)
    assert r.status_code == 202
    assert r.headers["Retry-After"].isdigit()
    # 13 resources: 1 Group, 7 Observations, 3 Patients, 1 Practitioner, this export's Task; the first page
    # (the Group) is written
    assert r.headers["X-Progress"] == "7% (1 of 13 resources); Group (type 1 of 5)"
    assert r.content == b""
    running = await task_of(client, location)
    assert running["status"] == "in-progress"
    assert running["businessStatus"]["text"] == "running"
    assert "start" in running["executionPeriod"]

    gate.release.set()
    manifest = await complete(app, client, location)
    r = await client.get(location)
    assert "Expires" in r.headers
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["request"] == "http://testserver/fhir/$export"
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert manifest["transactionTime"] == running["executionPeriod"]["start"]
    for item in manifest["output"]:
        assert set(item) == {"type", "url", "count"}

    # the files hold what the store holds, byte for byte, and as many resources as the store counts per type
    files = await download(client, manifest)
    assert ids(files)["Patient"] == {"p0", "p1", "p2"}
    for rtype, resources in files.items():
        r = await client.get(f"/{rtype}?_summary=count")
        assert r.json()["total"] == len(resources), rtype
        for resource in resources:
            stored = await client.get(f"/{rtype}/{resource['id']}")
            if rtype == "Task":  # the export's own Task, as it was when read: running
                assert resource["businessStatus"]["text"] == "running"
            else:
                assert json.loads(stored.content) == resource

    done = await task_of(client, location)
    assert done["status"] == "completed"
    assert done["authoredOn"] <= manifest["transactionTime"] <= done["executionPeriod"]["end"]
    urls = {o["valueUrl"] for o in done["output"] if "valueUrl" in o}
    assert urls == {item["url"] for item in manifest["output"]}
    total = next(o["valueInteger"] for o in done["output"] if o["type"]["text"] == "resources-exported")
    assert total == sum(item["count"] for item in manifest["output"])


async def test_kick_off_requires_respond_async(client: httpx.AsyncClient) -> None:
    r = await client.get("/$export")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["expression"] == ["Prefer"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("_outputFormat=application/fhir%2Bjson", "_outputFormat"),
        ("_since=2024-01-01", "_since"),
        ("_since=yesterday", "_since"),
        ("_type=Observation,NotAType", "_type"),
        ("_typeFilter=Observation%3Fno-such-param%3D1", "_typeFilter"),
        ("_typeFilter=Observation%3F_sort%3Ddate", "_typeFilter"),
        ("_typeFilter=NotAType%3Fcode%3D1", "_typeFilter"),
        ("_typeFilter=code%3D1", "_typeFilter"),
        ("_elements=id", "_elements"),
        ("includeAssociatedData=LatestProvenanceResources", "includeAssociatedData"),
        ("no-such-parameter=1", "no-such-parameter"),
        ("patient=Patient/p1", "patient"),
    ],
)
async def test_kick_off_refuses_what_it_does_not_support(
    client: httpx.AsyncClient, query: str, parameter: str
) -> None:
    r = await client.get(f"/$export?{query}", headers=ASYNC)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [parameter]
    assert (await client.get("/Task")).json().get("total") == 0  # nothing was started


async def test_patient_export_refuses_types_outside_the_compartment(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/$export?_type=Practitioner", headers=ASYNC)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_type"]
    assert "compartment" in r.json()["issue"][0]["diagnostics"]


async def test_unknown_group_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/Group/nope/$export", headers=ASYNC)
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize("fmt", ["application/fhir%2Bndjson", "application/fhir+ndjson", "application/ndjson",
                                 "ndjson"])
async def test_output_formats(app: Any, client: httpx.AsyncClient, store: Any, fmt: str) -> None:
    manifest = await complete(app, client, await kick_off(client, f"/$export?_outputFormat={fmt}&_type=Patient"))
    assert ids(await download(client, manifest)) == {"Patient": {"p0", "p1", "p2"}}


async def test_lenient_handling_ignores_and_reports(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    r = await client.get("/Patient/$export?_type=Patient,Practitioner&_elements=id",
                         headers={**ASYNC, "Prefer": "respond-async, handling=lenient"})
    assert r.status_code == 202
    warnings = [i for i in r.json()["issue"] if i["severity"] == "warning"]
    assert sorted(w["expression"][0] for w in warnings) == ["_elements", "_type"]
    manifest = await complete(app, client, r.headers["Content-Location"])
    assert ids(await download(client, manifest)) == {"Patient": {"p0", "p1", "p2"}}
    (error,) = manifest["error"]
    assert error["type"] == "OperationOutcome"
    assert error["count"] == 2
    lines = (await client.get(error["url"])).content.splitlines()
    assert {json.loads(line)["issue"][0]["expression"][0] for line in lines} == {"_elements", "_type"}


# -- what is exported ------------------------------------------------------------------------------------------


async def test_current_versions_only_and_no_deleted(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    await put(client, make_patient(id="p1", gender="male"))
    assert (await client.delete("/Patient/p2")).status_code == 204
    files = await download(client, await complete(app, client, await kick_off(client, "/$export?_type=Patient")))
    by_id = {p["id"]: p for p in files["Patient"]}
    assert set(by_id) == {"p0", "p1"}
    assert by_id["p1"]["gender"] == "male"
    assert by_id["p1"]["meta"]["versionId"] == "2"


async def test_files_are_split_at_the_configured_size(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    service(app).settings.max_resources_per_file = 2
    manifest = await complete(app, client, await kick_off(client, "/$export?_type=Observation"))
    assert sorted(item["count"] for item in manifest["output"]) == [1, 2, 2, 2]
    assert len({item["url"] for item in manifest["output"]}) == 4
    assert len(ids(await download(client, manifest))["Observation"]) == 7


async def test_type_and_since(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    marker = await put(client, make_patient(id="marker"))
    since = marker["meta"]["lastUpdated"]
    await put(client, observation("late", "Patient/p1"))
    await put(client, make_patient(id="p0", gender="other"))  # updated after the instant
    query = f"_since={since}&_type=Patient,Observation,Practitioner".replace("+", "%2B")
    files = await download(client, await complete(app, client, await kick_off(client, f"/$export?{query}")))
    assert ids(files) == {"Patient": {"p0"}, "Observation": {"late"}}


async def test_type_filter(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    weight = f"Observation%3Fcode%3D{WEIGHT}"
    files = await download(client, await complete(
        app, client, await kick_off(client, f"/$export?_type=Observation,Patient&_typeFilter={weight}")))
    assert ids(files) == {"Observation": {"w0", "w1", "w2", "loc-obs"}, "Patient": {"p0", "p1", "p2"}}

    # several filters of one type: any of them (here each has two criteria, both needed)
    filters = (f"Observation%3Fcode%3D{WEIGHT}%26subject%3DPatient/p0,"
               f"Observation%3Fcode%3D{HEIGHT}%26subject%3DPatient/p1")
    files = await download(client, await complete(
        app, client, await kick_off(client, f"/$export?_type=Observation&_typeFilter={filters}")))
    assert ids(files) == {"Observation": {"w0", "h1"}}

    # a filter for a type outside _type is ignored; the same filter repeated as two parameters is an OR
    files = await download(client, await complete(app, client, await kick_off(
        client, f"/$export?_type=Patient&_typeFilter=Observation%3Fcode%3D{HEIGHT}"
                f"&_typeFilter=Patient%3F_id%3Dp1&_typeFilter=Patient%3F_id%3Dp2")))
    assert ids(files) == {"Patient": {"p1", "p2"}}


async def test_patient_level_export_is_the_patient_compartment(app: Any, client: httpx.AsyncClient,
                                                              store: Any) -> None:
    files = await download(client, await complete(app, client, await kick_off(client, "/Patient/$export")))
    assert ids(files) == {
        "Patient": {"p0", "p1", "p2"},
        "Observation": {"w0", "w1", "w2", "h0", "h1", "h2"},  # not the one about a Location
        "Group": {"g1"},  # its members are patients
    }


@pytest.mark.parametrize("inline_max", [500, 0], ids=["member-ids", "member-index"])
async def test_group_export_is_the_members_compartments(
    app: Any, client: httpx.AsyncClient, store: Any, monkeypatch: pytest.MonkeyPatch, inline_max: int
) -> None:
    monkeypatch.setattr(_bulk_plan, "GROUP_INLINE_MAX", inline_max)
    files = await download(client, await complete(app, client, await kick_off(client, "/Group/g1/$export")))
    assert ids(files) == {"Patient": {"p0", "p2"}, "Observation": {"w0", "w2", "h0", "h2"}, "Group": {"g1"}}

    # the cohort follows the Group as it is when the job runs
    group = json.loads((await client.get("/Group/g1")).content)
    group["member"] = [{"entity": {"reference": "Patient/p1"}}]
    await put(client, group)
    files = await download(client, await complete(
        app, client, await kick_off(client, "/Group/g1/$export?_type=Patient,Observation")))
    assert ids(files) == {"Patient": {"p1"}, "Observation": {"w1", "h1"}}


async def test_post_kick_off_with_parameters(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_typeFilter", "valueString": f"Observation?code={HEIGHT}"},
        {"name": "patient", "valueReference": {"reference": "Patient/p2"}},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
    ]}
    r = await client.post("/Group/g1/$export", content=jsonio.dumps(body), headers={**ASYNC, **FHIR})
    assert r.status_code == 202, r.text
    manifest = await complete(app, client, r.headers["Content-Location"])
    assert manifest["request"] == "http://testserver/fhir/Group/g1/$export"  # POST parameters are not in it
    # the listed patients that are also members of the Group
    assert ids(await download(client, manifest)) == {"Patient": {"p2"}, "Observation": {"h2"}}

    bad = await client.post("/$export", content=jsonio.dumps({"resourceType": "Patient"}),
                            headers={**ASYNC, **FHIR})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["resourceType"]
    odd = {"resourceType": "Parameters", "parameter": [{"name": "_since", "valueInteger": 3}]}
    bad = await client.post("/$export", content=jsonio.dumps(odd), headers={**ASYNC, **FHIR})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["Parameters.parameter[0].valueInteger"]


# -- cancel, delete, expiry, failure --------------------------------------------------------------------------


async def test_cancel_while_running(app: Any, client: httpx.AsyncClient, store: Any, gate: GatedRepository,
                                    settings: Any) -> None:
    location = await kick_off(client, "/$export")
    job_dir = Path(settings.export_dir()) / location.rsplit("/", 1)[1]
    await asyncio.wait_for(gate.reached.wait(), 10)
    assert any(job_dir.glob("*.ndjson"))

    r = await client.delete(location)
    assert r.status_code == 202
    gate.release.set()
    await app.state.fhir.runner.drain()
    assert not job_dir.exists()
    assert (await client.get(location)).status_code == 404
    assert (await client.delete(location)).status_code == 404
    task = await task_of(client, location)
    assert task["status"] == "cancelled"


async def test_cancel_seen_by_a_job_in_another_process(app: Any, client: httpx.AsyncClient, store: Any,
                                                      gate: GatedRepository, settings: Any) -> None:
    """A DELETE answered by another server process only changes the Task; the job stops at its next page."""
    location = await kick_off(client, "/$export")
    job_dir = Path(settings.export_dir()) / location.rsplit("/", 1)[1]
    await asyncio.wait_for(gate.reached.wait(), 10)
    task = await task_of(client, location)
    task["status"] = "cancelled"
    await put(client, task)
    gate.release.set()
    await app.state.fhir.runner.drain()
    assert not job_dir.exists()
    assert (await client.get(location)).status_code == 404
    final = await task_of(client, location)
    assert final["status"] == "cancelled"
    assert "output" not in final


async def test_delete_after_completion_removes_the_files(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    location = await kick_off(client, "/$export?_type=Patient")
    manifest = await complete(app, client, location)
    url = manifest["output"][0]["url"]
    assert (await client.get(url)).status_code == 200
    assert (await client.delete(location)).status_code == 202
    assert (await client.get(url)).status_code == 404
    assert (await client.get(location)).status_code == 404
    task = await task_of(client, location)
    assert task["status"] == "completed"
    assert task["businessStatus"]["coding"][0]["code"] == "files-deleted"


async def test_files_expire(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    bulk = service(app)
    location = await kick_off(client, "/$export?_type=Patient")
    manifest = await complete(app, client, location)
    url = manifest["output"][0]["url"]
    assert await bulk.cleanup() == 0  # not yet expired
    assert (await client.get(url)).status_code == 200

    later = bulk.clock() + bulk.settings.file_expiry_s + 1
    bulk.clock = lambda: later
    assert (await client.get(location)).status_code == 404  # the manifest is gone with the expiry
    # the cleanup job, scheduled on the runner, deletes the files
    bulk.settings.cleanup_interval_s = 0.01
    bulk.stop()
    bulk.start()
    for _ in range(500):
        if (await client.get(url)).status_code == 404:
            break
        await asyncio.sleep(0.01)
    assert (await client.get(url)).status_code == 404
    await app.state.fhir.runner.drain()
    task = await task_of(client, location)
    assert task["businessStatus"]["coding"][0]["code"] == "files-expired"


async def test_storage_failure_fails_the_job(app: Any, client: httpx.AsyncClient, store: Any,
                                             monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    bulk = service(app)
    monkeypatch.setattr(bulk, "repo", GatedRepository(bulk.repo, fail_at=3))
    monkeypatch.setattr("fhir_server.services.bulk_export.PAGE", 2)
    bulk.repo.release.set()  # type: ignore[attr-defined]
    location = await kick_off(client, "/$export")
    await app.state.fhir.runner.drain()
    r = await client.get(location)
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "failed" in r.json()["issue"][0]["diagnostics"]
    task = await task_of(client, location)
    assert task["status"] == "failed"
    assert task["statusReason"]["text"] == "internal error (OperationalError)"
    assert not (Path(settings.export_dir()) / task["id"]).exists()


async def test_job_of_a_stopped_process_is_reported_failed(app: Any, client: httpx.AsyncClient, store: Any,
                                                           gate: GatedRepository) -> None:
    bulk = service(app)
    location = await kick_off(client, "/$export")
    await asyncio.wait_for(gate.reached.wait(), 10)
    await app.state.fhir.runner.close()  # what a shutdown does to running jobs
    assert (await client.get(location)).status_code == 202  # it might still be alive somewhere else
    later = bulk.clock() + STALE_AFTER_S + 1
    bulk.clock = lambda: later
    r = await client.get(location)
    assert r.status_code == 500
    assert "interrupted" in r.json()["issue"][0]["diagnostics"]
    assert (await task_of(client, location))["status"] == "failed"


async def test_file_names_are_checked(app: Any, client: httpx.AsyncClient, store: Any) -> None:
    location = await kick_off(client, "/$export?_type=Patient")
    await complete(app, client, location)
    job = location.rsplit("/", 1)[1]
    for name in ("manifest.json", "progress.json", "..%2F..%2Ftest.db", "Patient.1.ndjson%00"):
        r = await client.get(f"/$export-file/{job}/{name}")
        assert r.status_code == 404, name
    assert (await client.get("/$export-file/nope/Patient.1.ndjson")).status_code == 404
    assert (await client.get("/$export-status/nope")).status_code == 404
    patient = (await client.get("/Patient/p0")).json()
    assert (await client.get(f"/$export-status/{patient['id']}")).status_code == 404  # not an export Task


@pytest.fixture
async def many(client: httpx.AsyncClient) -> AsyncIterator[None]:
    for i in range(25):
        await put(client, make_patient(id=f"m{i}"))
    yield


async def test_pages_stream_into_the_files(app: Any, client: httpx.AsyncClient, many: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fhir_server.services.bulk_export.PAGE", 4)
    service(app).settings.max_resources_per_file = 10
    manifest = await complete(app, client, await kick_off(client, "/$export?_type=Patient"))
    assert [item["count"] for item in manifest["output"]] == [10, 10, 5]
    files = await download(client, manifest)
    assert ids(files)["Patient"] == {f"m{i}" for i in range(25)}

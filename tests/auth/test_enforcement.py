"""Enforcement beyond the matrix: tokens required by default, the CapabilityStatement's security, v2
query-restricted scopes, break-glass, administrators and the audit trail, loopback-only development mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner

from fhir_server.cli import is_loopback, main
from fhir_server.settings import AuthSettings, Settings, StorageSettings
from tests.auth.conftest import FHIR, ORIGIN, login_and_fetch, oauth_client
from tests.auth.enforcement import MARK, Hospital, hospital, observation

pytestmark = pytest.mark.asyncio(loop_scope="module")

LAB_ONLY = ("launch/patient patient/Patient.rs "
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hospital]:
    async with hospital(Path(tmp_path_factory.mktemp("enforcement"))) as world:
        resources = world.app.state.fhir.resources
        vital = observation("obs-a-vital", "pat-a", "vital-signs", "alice-vital")
        await resources.update("Observation", "obs-a-vital", json.dumps(vital).encode())
        yield world


async def _events(h: Hospital, before: set[str]) -> list[dict[str, Any]]:
    return await h.audit_events(await h.audit_ids() - before)


async def test_tokens_are_required_by_default() -> None:
    assert AuthSettings().enabled is True


async def test_metadata_is_public_and_names_the_smart_endpoints(h: Hospital) -> None:
    async with h.http("anonymous") as http:
        metadata = await http.get("metadata")
        patient = await http.get("Patient/pat-a")
        smart = await http.get(".well-known/smart-configuration")
    assert metadata.status_code == 200 and smart.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = security["extension"]
    assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris["token"] == smart.json()["token_endpoint"]
    assert uris["authorize"] == smart.json()["authorization_endpoint"]
    assert patient.status_code == 401
    assert patient.headers["www-authenticate"].startswith('Bearer realm="infirmary"')
    assert patient.json()["issue"][0]["code"] == "login"


async def test_a_query_restricted_scope_reaches_only_what_its_query_matches(h: Hospital) -> None:
    async with oauth_client(h.world, scope=LAB_ONLY) as client:
        token = (await login_and_fetch(h.world, client, "alice"))["access_token"]
    assert "patient/Observation.rs?category=" in (await _introspected_scope(h, token))
    h.tokens["A-lab"] = token
    async with h.http("A-lab") as http:
        assert (await http.get("Observation/obs-a-lab")).status_code == 200
        assert (await http.get("Observation/obs-a-vital")).status_code == 404
        found = (await http.get("Observation")).json()
        history = (await http.get("Observation/_history")).json()
        everything = (await http.get("Patient/pat-a/$everything")).json()
        assert (await http.get("Condition")).status_code == 403
        write = await http.put("Observation/obs-a-lab", json=observation("obs-a-lab", "pat-a", "laboratory", "x"))
    assert [e["resource"]["id"] for e in found["entry"]] == ["obs-a-lab"]
    assert {e["resource"]["id"] for e in history["entry"]} == {"obs-a-lab"}
    assert "total" not in history  # a filtered history does not count what it hides
    ids = {e["resource"]["id"] for e in everything["entry"]}
    assert "obs-a-lab" in ids and "obs-a-vital" not in ids and "cond-a" not in ids
    assert write.status_code == 403  # rs: no updates


async def _introspected_scope(h: Hospital, token: str) -> str:
    context = h.app.state.auth.authenticate(f"Bearer {token}", FHIR)
    return str(context.scopes.text)


async def test_break_glass(h: Hospital) -> None:
    async with h.http("physician") as http:
        assert (await http.get("Observation/obs-a-lab")).status_code == 403  # A is not the physician's patient
        assert (await http.get(f"{ORIGIN}/auth/break-glass")).json() == {"active": False}
        refused = await http.post(f"{ORIGIN}/auth/break-glass", json={"minutes": 10})
        too_long = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "x", "minutes": 100_000})
        before = await h.audit_ids()
        granted = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "unconscious patient in ER", "minutes": 10})
        assert granted.status_code == 201, granted.text
        state = (await http.get(f"{ORIGIN}/auth/break-glass")).json()
        read = await http.get("Observation/obs-a-lab")
        events = await _events(h, before)
        ended = await http.delete(f"{ORIGIN}/auth/break-glass")
        after = await http.get("Observation/obs-a-lab")
    assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == ["reason"]
    assert too_long.status_code == 400 and too_long.json()["issue"][0]["expression"] == ["minutes"]
    assert granted.json()["user"] == "u-doc" and 590 <= granted.json()["expires_in"] <= 600
    assert state["active"] is True
    assert read.status_code == 200 and ended.status_code == 204 and after.status_code == 403
    grant = [e for e in events if e["type"]["code"] == "110113"]
    access = [e for e in events if e["type"]["code"] == "rest"]
    assert len(grant) == 1 and grant[0]["entity"][0]["description"] == "unconscious patient in ER"
    assert len(access) == 1 and access[0]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert access[0]["entity"][0]["what"] == {"reference": "Patient/pat-a"}


async def test_break_glass_is_for_clinicians(h: Hospital) -> None:
    async with h.http("nurse") as http:
        own = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "emergency"})
    async with h.http("clerk") as http:
        clerk = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "emergency"})
    async with h.http("admin") as http:
        for_nurse = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "code blue", "user": "u-nurse",
                                                               "minutes": 5})
        for_clerk = await http.post(f"{ORIGIN}/auth/break-glass", json={"reason": "x", "user": "u-clerk"})
    assert own.status_code == 403 and clerk.status_code == 403
    assert for_nurse.status_code == 201 and for_clerk.status_code == 400
    async with h.http("nurse") as http:
        assert (await http.get("Observation/obs-b-lab")).status_code == 200  # every patient, while it lasts
        assert (await http.delete("Observation/obs-b-lab")).status_code == 403  # the role still applies
    async with h.http("admin") as http:
        assert (await http.delete(f"{ORIGIN}/auth/break-glass?user=u-nurse")).status_code == 204
    async with h.http("nurse") as http:
        assert (await http.get("Observation/obs-b-lab")).status_code == 403


async def test_administrators_search_the_audit_trail_but_not_clinical_data(h: Hospital) -> None:
    async with h.http("A") as http:
        assert (await http.get("Patient/pat-a")).status_code == 200
    async with h.http("admin") as http:
        trail = await http.get("AuditEvent", params={"patient": "Patient/pat-a", "_count": "500"})
        by_agent = await http.get("AuditEvent", params={"agent": "Practitioner/prac-doc"})
        denied = await http.get("AuditEvent", params={"outcome": "4", "_count": "500"})
        clinical = await http.get("Observation/obs-a-lab")
        update = await http.put(f"AuditEvent/{trail.json()['entry'][0]['resource']['id']}",
                                json=trail.json()["entry"][0]["resource"])
    assert trail.status_code == 200 and trail.json()["entry"]
    assert all(any(x.get("what", {}).get("reference") == "Patient/pat-a" for x in e["resource"]["entity"])
               for e in trail.json()["entry"])
    assert by_agent.json()["entry"] and denied.json()["entry"]
    assert clinical.status_code == 403 and update.status_code == 403  # audit records are never changed


async def test_audit_events_are_valid_r4(h: Hospital) -> None:
    from fhir_server.services.validate import Validator

    validator = Validator(h.app.state.fhir.defs)
    events = await h.audit_events(await h.audit_ids())
    assert len(events) > 10
    for event in events:
        problems = [i for i in validator.validate(event) if i.severity in ("error", "fatal")]
        assert not problems, (problems, event)


async def test_no_marker_reaches_patient_a_through_a_batch_of_everything(h: Hospital) -> None:
    """One more sweep: every type A may search, in one batch (each entry a search of the whole type)."""
    types = sorted(h.app.state.security.linked | {"Practitioner"})
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": f"{t}?_count=1000"}} for t in types]}
    async with h.http("A") as http:
        response = await http.post("", json=bundle)
    assert response.status_code == 200
    assert MARK not in response.content and b"pat-b" not in response.content
    assert all(e["response"]["status"].startswith(("200", "403")) for e in response.json()["entry"])


async def test_development_mode_listens_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `serve` passes its options on as FHIR_* variables (for uvicorn's workers): undo them after the test
    for key in ("FHIR_SERVER__HOST", "FHIR_SERVER__PORT", "FHIR_DATA_DIR", "FHIR_SERVER__WORKERS", "FHIR_DEMO"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    runner = CliRunner()
    env = {"FHIR_AUTH__ENABLED": "false", "FHIR_DATA_DIR": str(tmp_path)}
    result = runner.invoke(main, ["serve", "--host", "0.0.0.0", "--no-demo"], env=env)
    assert result.exit_code != 0 and "loopback" in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")


def _spool_files(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in directory.glob("spool*")]


async def test_the_audit_writer_batches_and_never_loses_events(tmp_path: Path) -> None:
    from fhir_server.app import create_app
    from fhir_server.auth.audit import AuditWriter, RequestInfo, request_events
    from fhir_server.auth.guard import AccessRecord, Touch
    from fhir_server.storage.base import NewResource, Repository

    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "a.db"),
                        auth=AuthSettings(enabled=True))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repo = app.state.fhir.repo
        index = app.state.fhir.resources.index
        record = AccessRecord([Touch("Observation", f"o{i}", frozenset({f"p{i}"}), "R") for i in range(3)])
        events = request_events(None, record, RequestInfo("GET", "Observation", "", 200, "10.0.0.1"),
                                linked_types=frozenset({"Observation"}))
        assert len(events) == 3  # one per patient

        class Counting:
            calls = 0
            fail = False

            async def create_many(self, resource_type: str, items: list[NewResource]) -> list[bool]:
                Counting.calls += 1
                if Counting.fail:
                    raise OSError("store down")
                return await repo.create_many(resource_type, items)

        writer = AuditWriter(Counting(), index, batch_max=500, spool=tmp_path / "spool.ndjson")  # type: ignore[arg-type]
        many = [dict(events[i % 3], id=f"ev-{i}") for i in range(1200)]
        await writer.submit(many)  # queued before the writer runs: it takes them in batches
        await writer.start()
        await writer.flush()
        assert Counting.calls == 3 and writer.written == 1200
        assert await repo.count("AuditEvent") >= 1200
        # the store goes away: events wait, are retried, and at shutdown go to the spool file
        Counting.fail = True
        await writer.submit([dict(events[0], id="ev-late")])
        await writer.stop(grace_s=0.3)
        (spooled,) = _spool_files(tmp_path)
        assert b"ev-late" in spooled
        # the next start (of any process sharing the directory) writes them
        Counting.fail = False
        again = AuditWriter(Counting(), index, spool=tmp_path / "spool.ndjson")  # type: ignore[arg-type]
        await again.start()
        await again.flush()
        await again.stop()
        assert not _spool_files(tmp_path)
        assert (await repo.read("AuditEvent", "ev-late")) is not None
        assert isinstance(repo, Repository)


async def test_auth_off_is_open_and_unaudited(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "o.db"),
                        auth=AuthSettings(enabled=False))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=FHIR) as http:
            created = await http.post("Patient", json={"resourceType": "Patient"})
            metadata = (await http.get("metadata")).json()
        await app.state.security.audit_writer.flush()
        assert created.status_code == 201 and "security" not in metadata["rest"][0]
        assert await app.state.fhir.repo.count("AuditEvent") == 0


async def test_a_patient_cannot_tell_which_ids_exist_in_other_records(h: Hospital) -> None:
    """A PUT to another patient's Observation and a PUT that would create one with a chosen id get the same
    answer (no 403-versus-201 oracle); the patient's own resources are still updated with PUT."""
    async with h.http("A") as http:
        taken = await http.put("Observation/obs-b-lab", json=observation("obs-b-lab", "pat-a", "laboratory", "x"))
        free = await http.put("Observation/never-was", json=observation("never-was", "pat-a", "laboratory", "x"))
        own = (await http.get("Observation?subject=Patient/pat-a&_count=1")).json()["entry"][0]["resource"]
        updated = await http.put(f"Observation/{own['id']}", json={**own, "status": "amended"})
    assert taken.status_code == free.status_code == 403
    assert taken.json()["issue"][0]["diagnostics"] == free.json()["issue"][0]["diagnostics"]
    assert updated.status_code == 200, updated.text
    async with h.http("B") as http:
        assert (await http.get("Observation/obs-b-lab")).json()["valueString"] != "x"

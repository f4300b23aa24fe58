"""What the transaction planner shares or leaves out for speed changes no result: parsed criteria are reused only
while the search parameters stay the same, and a create whose ``ifNoneExist`` match vanishes before the write is
planned again in full (validated and indexed)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.indexing.extract import search_param_from_resource
from fhir_server.services.resources import new_id
from fhir_server.settings import Settings
from fhir_server.storage.base import IndexEntries, TokenEntry, WriteOp, WriteOutcome
from fhir_server.storage.sqlite.repository import SQLiteRepository
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
SYS = "https://infirmary.example.org/mrn"


def _transaction(*entries: dict[str, Any]) -> bytes:
    return jsonio.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)})


async def test_if_none_exist_match_gone_at_write_time_is_created_indexed(app: Any,
                                                                        client: httpx.AsyncClient) -> None:
    resources = app.state.fhir.resources
    first = await client.post("/Patient", content=jsonio.dumps(make_patient(
        identifier=[{"system": SYS, "value": "GONE-1"}], name=[{"family": "Before"}])), headers=FHIR)
    assert first.status_code == 201
    old_id = first.json()["id"]
    real_write = resources.repo.write
    planned: list[list[WriteOp]] = []

    async def delete_first(ops: list[WriteOp]) -> list[WriteOutcome]:
        planned.append(list(ops))
        if len(planned) == 1:  # between the plan (which saw the match) and its write, the match is deleted
            await real_write([WriteOp("delete", "Patient", id=old_id)])
        return await real_write(ops)

    resources.repo.write = delete_first
    try:
        body = _transaction({"fullUrl": "urn:uuid:p", "resource": make_patient(
            identifier=[{"system": SYS, "value": "GONE-1"}], name=[{"family": "Zebedee"}]),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYS}|GONE-1"}})
        response = await client.post("", content=body, headers=FHIR)
    finally:
        del resources.repo.write
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"].startswith("201")
    assert len(planned) == 2  # the first plan was refused (concurrent change) and made again
    assert not planned[0][0].index.tokens  # planned on the match: nothing to write, nothing indexed
    assert planned[1][0].index.tokens  # planned again without it: a real create, fully indexed
    found = (await client.get("/Patient", params={"family": "Zebedee", "identifier": f"{SYS}|GONE-1"})).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [planned[1][0].id]


async def test_a_match_another_server_process_creates_after_the_plan_is_found_at_write_time(
        app: Any, client: httpx.AsyncClient, settings: Settings) -> None:
    """The writer may skip a conditional search the plan's look-up just ran, but not when another connection to
    the file (another server process) committed in between: the plan is refused and made again."""
    resources = app.state.fhir.resources
    assert (await client.post("/Patient", content=jsonio.dumps(make_patient()), headers=FHIR)).status_code == 201
    real_write = resources.repo.write
    planned: list[list[WriteOp]] = []
    other = SQLiteRepository(settings.storage.sqlite_path)

    async def other_process_creates(ops: list[WriteOp]) -> list[WriteOutcome]:
        planned.append(list(ops))
        if len(planned) == 1:  # the plan found no match; now another process creates one
            await other.open()
            try:
                await other.write([WriteOp("create", "Patient", id="theirs", resource=make_patient(
                    id="theirs", identifier=[{"system": SYS, "value": "OTHER-1"}]), index=IndexEntries(
                    tokens=[TokenEntry("identifier", SYS, "OTHER-1")]))])
            finally:
                await other.close()
        return await real_write(ops)

    resources.repo.write = other_process_creates
    try:
        body = _transaction({"fullUrl": "urn:uuid:p", "resource": make_patient(
            identifier=[{"system": SYS, "value": "OTHER-1"}]),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYS}|OTHER-1"}})
        response = await client.post("", content=body, headers=FHIR)
    finally:
        del resources.repo.write
    assert response.status_code == 200, response.text
    assert len(planned) == 2  # refused (concurrent change) and planned again on the other process's Patient
    entry = response.json()["entry"][0]["response"]
    assert entry["status"].startswith("200") and entry["location"].startswith("Patient/theirs/")
    found = (await client.get("/Patient", params={"identifier": f"{SYS}|OTHER-1"})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["theirs"]


async def test_matched_if_none_exist_body_is_still_validated(client: httpx.AsyncClient) -> None:
    patient = make_patient(identifier=[{"system": SYS, "value": "VAL-1"}])
    assert (await client.post("/Patient", content=jsonio.dumps(patient), headers=FHIR)).status_code == 201
    body = _transaction({"resource": {**patient, "gender": "not-a-gender"},
                         "request": {"method": "POST", "url": "Patient",
                                     "ifNoneExist": f"identifier={SYS}|VAL-1"}})
    response = await client.post("", content=body, headers=FHIR)
    assert response.status_code == 422
    assert "gender" in response.text


async def test_parsed_criteria_are_reused_until_the_search_parameters_change(app: Any) -> None:
    resources = app.state.fhir.resources
    first = resources.criteria("Patient", f"identifier={SYS}|C-1")
    assert resources.criteria("Patient", f"identifier={SYS}|C-1") is first
    assert resources.criteria("Patient", f"identifier={SYS}|C-2") is not first
    with pytest.raises(FhirError):
        resources.criteria("Patient", "nickname=Al")
    resources.indexer.add(search_param_from_resource({
        "resourceType": "SearchParameter", "url": "https://infirmary.example.org/sp/nickname", "name": "nickname",
        "status": "active", "code": "nickname", "base": ["Patient"], "type": "string",
        "expression": "Patient.name.given"}))
    again = resources.criteria("Patient", f"identifier={SYS}|C-1")
    assert again is not first and again == first
    nickname = resources.criteria("Patient", "nickname=Al")  # parses now: the failure was not kept
    assert nickname.criteria[0].param == "nickname"


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = [new_id() for _ in range(500)]
    assert len(set(ids)) == 500
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122

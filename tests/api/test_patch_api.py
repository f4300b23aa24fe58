"""PATCH over HTTP: JSON Patch and FHIRPath Patch, validation of the result, If-Match, conditional patch."""

from __future__ import annotations

import httpx

from fhir_server import jsonio
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
SYS = "https://infirmary.example.org/mrn"


async def _put(client: httpx.AsyncClient, resource: dict[str, object]) -> None:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", content=jsonio.dumps(resource),
                         headers=FHIR)
    assert r.status_code in (200, 201), r.text


async def test_json_patch(client: httpx.AsyncClient) -> None:
    await _put(client, make_patient(id="jp"))
    ops = [{"op": "replace", "path": "/birthDate", "value": "1985-01-01"},
           {"op": "add", "path": "/name/0/given/-", "value": "Mei"}]
    r = await client.patch("/Patient/jp", content=jsonio.dumps(ops), headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1985-01-01"
    assert r.json()["name"][0]["given"] == ["Alice", "Mei"]
    assert r.headers["etag"] == 'W/"2"'


async def test_patch_result_is_validated_and_nothing_written(client: httpx.AsyncClient) -> None:
    await _put(client, make_patient(id="jv"))
    ops = [{"op": "replace", "path": "/gender", "value": "martian"}]
    r = await client.patch("/Patient/jv", content=jsonio.dumps(ops), headers=JSON_PATCH)
    assert r.status_code in (400, 422)
    assert r.json()["issue"][0]["expression"] == ["Patient.gender"]
    assert (await client.get("/Patient/jv")).json()["meta"]["versionId"] == "1"
    r = await client.patch("/Patient/jv", content=jsonio.dumps([{"op": "replace", "path": "/id", "value": "x"}]),
                           headers=JSON_PATCH)
    assert r.status_code == 400


async def test_fhirpath_patch(client: httpx.AsyncClient) -> None:
    await _put(client, make_patient(id="fp"))
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "value", "valueDate": "1990-02-02"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.active"}]},
    ]}
    r = await client.patch("/Patient/fp", content=jsonio.dumps(params), headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1990-02-02" and "active" not in r.json()


async def test_patch_if_match_and_unknown_and_media_type(client: httpx.AsyncClient) -> None:
    await _put(client, make_patient(id="pm"))
    ops = jsonio.dumps([{"op": "replace", "path": "/active", "value": False}])
    r = await client.patch("/Patient/pm", content=ops, headers={**JSON_PATCH, "If-Match": 'W/"5"'})
    assert r.status_code == 412
    r = await client.patch("/Patient/nope", content=ops, headers=JSON_PATCH)
    assert r.status_code == 404
    r = await client.patch("/Patient/pm", content=ops, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_conditional_patch(client: httpx.AsyncClient) -> None:
    await _put(client, make_patient(id="cp", identifier=[{"system": SYS, "value": "CP-1"}]))
    ops = jsonio.dumps([{"op": "replace", "path": "/active", "value": False}])
    r = await client.patch(f"/Patient?identifier={SYS}|CP-1", content=ops, headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["id"] == "cp" and r.json()["active"] is False
    r = await client.patch("/Patient?identifier=none", content=ops, headers=JSON_PATCH)
    assert r.status_code == 404

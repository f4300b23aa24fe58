"""create, read, vread, update, delete over HTTP, with the headers and statuses of R4 http.html."""

from __future__ import annotations

import httpx

from fhir_server import jsonio
from tests.factories import make_observation, make_patient

FHIR = {"Content-Type": "application/fhir+json"}


def body(resource: dict[str, object]) -> bytes:
    return jsonio.dumps(resource)


async def create(client: httpx.AsyncClient, resource: dict[str, object], **headers: str) -> httpx.Response:
    return await client.post(f"/{resource['resourceType']}", content=body(resource), headers={**FHIR, **headers})


async def test_create_assigns_id_and_returns_location_etag(client: httpx.AsyncClient) -> None:
    r = await create(client, make_patient(id="client-chosen"))
    assert r.status_code == 201
    created = r.json()
    assert created["id"] != "client-chosen"  # the server assigns ids on create
    assert created["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{created['id']}/_history/1"
    assert "GMT" in r.headers["last-modified"]
    assert r.headers["content-type"].startswith("application/fhir+json")


async def test_read_returns_what_was_sent_with_exact_decimals(client: httpx.AsyncClient) -> None:
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
           b'"valueQuantity":{"value":72.50,"unit":"kg"},'
           b'"_status":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}}')
    r = await client.post("/Observation", content=raw, headers=FHIR)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    got = await client.get(f"/Observation/{rid}")
    assert got.status_code == 200
    assert b'"value":72.50' in got.content
    data = jsonio.loads(got.content)
    assert data["_status"] == {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert list(data)[:3] == ["resourceType", "id", "meta"]


async def test_read_unknown_is_404_outcome_and_unknown_type_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/nope")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"
    r = await client.get("/Unicorn/1")
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-found"


async def test_update_as_create_then_update_versions(client: httpx.AsyncClient) -> None:
    p = make_patient(id="pat-1")
    r = await client.put("/Patient/pat-1", content=body(p), headers=FHIR)
    assert r.status_code == 201
    assert r.headers["etag"] == 'W/"1"'
    p["active"] = False
    r = await client.put("/Patient/pat-1", content=body(p), headers=FHIR)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    v1 = await client.get("/Patient/pat-1/_history/1")
    assert v1.status_code == 200 and v1.json()["active"] is True
    v2 = await client.get("/Patient/pat-1/_history/2")
    assert v2.json()["active"] is False
    assert (await client.get("/Patient/pat-1/_history/3")).status_code == 404
    assert (await client.get("/Patient/pat-1/_history/x")).status_code == 404


async def test_update_id_mismatch_and_missing_id_are_400(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/a", content=body(make_patient(id="b")), headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]
    r = await client.put("/Patient/a", content=body(make_patient()), headers=FHIR)
    assert r.status_code == 400
    assert (await client.get("/Patient/a")).status_code == 404
    r = await client.put("/Observation/a", content=body(make_patient(id="a")), headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["resourceType"]


async def test_if_match(client: httpx.AsyncClient) -> None:
    p = make_patient(id="pm")
    await client.put("/Patient/pm", content=body(p), headers=FHIR)
    stale = await client.put("/Patient/pm", content=body(p), headers={**FHIR, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    ok = await client.put("/Patient/pm", content=body(p), headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    bad = await client.put("/Patient/pm", content=body(p), headers={**FHIR, "If-Match": "garbage"})
    assert bad.status_code == 400
    assert (await client.get("/Patient/pm")).json()["meta"]["versionId"] == "2"


async def test_delete_is_versioned_and_read_answers_410(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/d1", content=body(make_patient(id="d1")), headers=FHIR)
    r = await client.delete("/Patient/d1")
    assert r.status_code == 204
    assert r.headers["etag"] == 'W/"2"'
    gone = await client.get("/Patient/d1")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert (await client.get("/Patient/d1/_history/1")).status_code == 200
    assert (await client.get("/Patient/d1/_history/2")).status_code == 410
    # deleting again writes nothing; deleting the unknown is also 204
    assert (await client.delete("/Patient/d1")).status_code == 204
    assert (await client.delete("/Patient/never")).status_code == 204
    hist = (await client.get("/Patient/d1/_history")).json()
    assert hist["total"] == 2
    # update after delete brings it back as version 3
    r = await client.put("/Patient/d1", content=body(make_patient(id="d1")), headers=FHIR)
    assert r.status_code == 201 and r.headers["etag"] == 'W/"3"'


async def test_conditional_read_headers(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/c1", content=body(make_patient(id="c1")), headers=FHIR)
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    assert (await client.get("/Patient/c1", headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get("/Patient/c1", headers={"If-None-Match": 'W/"9"'})).status_code == 200
    assert (await client.get("/Patient/c1", headers={"If-Modified-Since": modified})).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await client.get("/Patient/c1", headers={"If-Modified-Since": old})).status_code == 200


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    r = await create(client, make_patient(), Prefer="return=minimal")
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
    r = await create(client, make_patient(), Prefer="return=OperationOutcome")
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["severity"] == "information"
    r = await create(client, make_patient(), Prefer="return=representation")
    assert r.json()["resourceType"] == "Patient"


async def test_format_accept_pretty(client: httpx.AsyncClient) -> None:
    r = await create(client, make_patient())
    rid = r.json()["id"]
    assert (await client.get(f"/Patient/{rid}", headers={"Accept": "application/fhir+xml"})).status_code == 406
    r406 = await client.get(f"/Patient/{rid}?_format=xml")
    assert r406.status_code == 406 and r406.json()["issue"][0]["expression"] == ["_format"]
    r = await client.get(f"/Patient/{rid}", headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(f"/Patient/{rid}", headers={"Accept": "text/html, */*;q=0.1"})
    assert r.status_code == 200
    r = await client.get(f"/Patient/{rid}?_format=json&_pretty=true")
    assert r.status_code == 200 and b'\n  "resourceType"' in r.content


async def test_415_for_non_json_bodies(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_bad_json_is_400(client: httpx.AsyncClient) -> None:
    for raw in (b"{", b"[]", b"", b'{"resourceType":"Patient","active":true,"active":false}', b'{"a":1}'):
        r = await client.post("/Patient", content=raw, headers=FHIR)
        assert r.status_code == 400, raw
        assert r.json()["resourceType"] == "OperationOutcome"


async def test_summary_and_elements_on_read(client: httpx.AsyncClient) -> None:
    p = make_patient(id="s1", text={"status": "generated",
                                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">Alice</div>'},
                     maritalStatus={"text": "married"})
    await client.put("/Patient/s1", content=body(p), headers=FHIR)
    summary = (await client.get("/Patient/s1?_summary=true")).json()
    assert "name" in summary and "birthDate" in summary
    assert "maritalStatus" not in summary and "text" not in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    data = (await client.get("/Patient/s1?_summary=data")).json()
    assert "text" not in data and "maritalStatus" in data
    text = (await client.get("/Patient/s1?_summary=text")).json()
    assert "text" in text and "name" not in text
    el = (await client.get("/Patient/s1?_elements=birthDate")).json()
    assert set(el) == {"resourceType", "id", "meta", "birthDate"}
    assert (await client.get("/Patient/s1?_summary=bogus")).status_code == 400


async def test_errors_are_outcomes(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere/at/all/really/deep")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.post("/metadata", content=b"{}")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.request("PATCH", "/Patient/x/_history")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


async def test_observation_roundtrip(client: httpx.AsyncClient) -> None:
    r = await create(client, make_observation("p9"))
    assert r.status_code == 201, r.text
    got = (await client.get(f"/Observation/{r.json()['id']}")).json()
    assert got["valueQuantity"]["value"] == 72.5

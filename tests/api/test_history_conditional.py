"""History at three levels with paging, and the conditional interactions' 0/1/many rules."""

from __future__ import annotations

import asyncio

import httpx

from fhir_server import jsonio
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
SYS = "https://infirmary.example.org/mrn"


def body(resource: dict[str, object]) -> bytes:
    return jsonio.dumps(resource)


async def test_history_levels_and_paging(client: httpx.AsyncClient) -> None:
    for i in range(3):
        p = make_patient(id="h1", active=i % 2 == 0)
        await client.put("/Patient/h1", content=body(p), headers=FHIR)
    await client.put("/Patient/h2", content=body(make_patient(id="h2")), headers=FHIR)
    await client.delete("/Patient/h2")
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
    await client.put("/Observation/o1", content=body(obs), headers=FHIR)

    inst = (await client.get("/Patient/h1/_history")).json()
    assert inst["type"] == "history" and inst["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in inst["entry"]] == ["3", "2", "1"]
    assert inst["entry"][-1]["request"] == {"method": "PUT", "url": "Patient/h1"}
    assert inst["entry"][-1]["response"]["status"] == "201 Created"

    typ = (await client.get("/Patient/_history")).json()
    assert typ["total"] == 5
    first = typ["entry"][0]
    assert first["request"]["method"] == "DELETE" and "resource" not in first

    system = (await client.get("/_history")).json()
    assert system["total"] == 6

    # paging: follow next links until done, collecting every version once
    page = (await client.get("/_history?_count=2")).json()
    seen = []
    while True:
        seen += [(e["fullUrl"], e["response"]["etag"]) for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = (await client.get(nxt[0].replace("http://testserver/fhir", ""))).json()
    assert len(seen) == 6 and len(set(seen)) == 6
    prev = [link["url"] for link in page["link"] if link["relation"] == "previous"]
    assert prev, "the last page links back"


async def test_history_since_and_at(client: httpx.AsyncClient) -> None:
    r1 = await client.put("/Patient/t1", content=body(make_patient(id="t1")), headers=FHIR)
    t1 = r1.json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)
    r2 = await client.put("/Patient/t1", content=body(make_patient(id="t1", active=False)), headers=FHIR)
    t2 = r2.json()["meta"]["lastUpdated"]
    since = (await client.get("/Patient/t1/_history", params={"_since": t2})).json()
    assert since["total"] == 1 and since["entry"][0]["resource"]["meta"]["versionId"] == "2"
    at = (await client.get("/Patient/t1/_history", params={"_at": t1})).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]
    assert (await client.get("/Patient/t1/_history", params={"_since": "yesterday"})).status_code == 400
    assert (await client.get("/Patient/t1/_history", params={"_bogus": "1"})).status_code == 400


async def test_conditional_create(client: httpx.AsyncClient) -> None:
    p = make_patient(identifier=[{"system": SYS, "value": "CC-1"}])
    h = {**FHIR, "If-None-Exist": f"identifier={SYS}|CC-1"}
    first = await client.post("/Patient", content=body(p), headers=h)
    assert first.status_code == 201
    again = await client.post("/Patient", content=body(p), headers=h)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    # two matches → 412
    await client.post("/Patient", content=body(make_patient(identifier=[{"system": SYS, "value": "DUP"}])),
                      headers=FHIR)
    await client.post("/Patient", content=body(make_patient(identifier=[{"system": SYS, "value": "DUP"}])),
                      headers=FHIR)
    many = await client.post("/Patient", content=body(p), headers={**FHIR, "If-None-Exist": "identifier=DUP"})
    assert many.status_code == 412
    # any search works as criteria now; an unknown parameter is an error naming it, never ignored
    by_name = await client.post("/Patient", content=body(p), headers={**FHIR, "If-None-Exist": "family=Ng"})
    assert by_name.status_code == 412
    unknown = await client.post("/Patient", content=body(p), headers={**FHIR, "If-None-Exist": "bogus=1"})
    assert unknown.status_code == 400
    assert unknown.json()["issue"][0]["expression"] == ["bogus"]


async def test_conditional_update(client: httpx.AsyncClient) -> None:
    ident = [{"system": SYS, "value": "CU-1"}]
    # no match, no id → created with a server id
    r = await client.put(f"/Patient?identifier={SYS}|CU-1", content=body(make_patient(identifier=ident)),
                         headers=FHIR)
    assert r.status_code == 201
    pid = r.json()["id"]
    # one match → update it
    r = await client.put(f"/Patient?identifier={SYS}|CU-1",
                         content=body(make_patient(identifier=ident, active=False)), headers=FHIR)
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    # one match but a different id in the body → 400
    r = await client.put(f"/Patient?identifier={SYS}|CU-1",
                         content=body(make_patient(id="other", identifier=ident)), headers=FHIR)
    assert r.status_code == 400
    # no match, id in body → update as create with that id
    r = await client.put(f"/Patient?identifier={SYS}|CU-2",
                         content=body(make_patient(id="cu2", identifier=[{"system": SYS, "value": "CU-2"}])),
                         headers=FHIR)
    assert r.status_code == 201 and r.json()["id"] == "cu2"
    # several matches → 412
    for _ in range(2):
        await client.post("/Patient", content=body(make_patient(identifier=[{"system": SYS, "value": "M"}])),
                          headers=FHIR)
    r = await client.put(f"/Patient?identifier={SYS}|M", content=body(make_patient()), headers=FHIR)
    assert r.status_code == 412
    # no criteria → 400
    assert (await client.put("/Patient", content=body(make_patient()), headers=FHIR)).status_code == 400


async def test_conditional_delete(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/cd1", content=body(make_patient(id="cd1", identifier=[{"system": SYS,
                                                                                       "value": "CD"}])),
                     headers=FHIR)
    assert (await client.delete("/Patient?identifier=nothing-matches")).status_code == 204
    assert (await client.delete(f"/Patient?identifier={SYS}|CD")).status_code == 204
    assert (await client.get("/Patient/cd1")).status_code == 410
    for _ in range(2):
        await client.post("/Patient", content=body(make_patient(identifier=[{"system": SYS, "value": "CD2"}])),
                          headers=FHIR)
    assert (await client.delete("/Patient?identifier=CD2")).status_code == 412
    assert (await client.delete("/Patient?_id=cd1,x")).status_code == 204


async def test_token_escapes_and_system_forms(client: httpx.AsyncClient) -> None:
    ident = [{"system": "urn:sys", "value": "a|b,c"}, {"value": "nosys"}]
    await client.put("/Patient/esc", content=body(make_patient(id="esc", identifier=ident)), headers=FHIR)

    async def matches(criteria: str) -> bool:
        r = await client.post("/Patient", content=body(make_patient()),
                              headers={**FHIR, "If-None-Exist": criteria})
        if r.status_code == 201:  # undo the create so the store stays the same
            await client.delete(f"/Patient/{r.json()['id']}")
        return r.status_code == 200

    assert await matches(r"identifier=urn:sys|a\|b\,c")
    assert await matches("identifier=urn:sys|")
    assert await matches("identifier=|nosys")
    assert not await matches("identifier=|a\\|b\\,c")
    assert await matches("identifier=other,nosys")
    assert not await matches("identifier=urn:sys|nosys")


async def test_capability_statement(client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert len(types) == 146
    patient = {i["code"] for i in types["Patient"]["interaction"]}
    assert patient == {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                       "search-type"}
    assert types["Patient"]["conditionalDelete"] == "single"
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {"transaction", "batch", "history-system",
                                                                 "search-system"}
    assert {o["name"] for o in cs["rest"][0]["operation"]} == {"export"}
    assert {o["name"] for o in types["Patient"]["operation"]} == {"export", "everything"}
    assert {o["name"] for o in types["Group"]["operation"]} == {"export"}
    params = {p["name"]: p["type"] for p in types["Patient"]["searchParam"]}
    assert params["birthdate"] == "date" and params["_id"] == "token" and params["_tag"] == "token"
    assert "Observation:subject" in types["Observation"]["searchInclude"]

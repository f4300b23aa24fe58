"""batch and transaction Bundles: processing order, reference resolution, conditional rules, atomicity, batch
outcomes (R4 http.html#transaction)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
SYS = "https://infirmary.example.org/mrn"
U1 = "urn:uuid:6a5f9a47-2a4f-4a8e-9f5e-0d6f3b1d2c01"
U2 = "urn:uuid:6a5f9a47-2a4f-4a8e-9f5e-0d6f3b1d2c02"
OID = "urn:oid:1.2.840.113619.2.55.3"


def bundle(kind: str, *entries: dict[str, Any]) -> bytes:
    return jsonio.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)})


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"],
                                                               **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], url: str | None = None, **request: str) -> dict[str, Any]:
    url = url or f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def req(method: str, url: str, **request: str) -> dict[str, Any]:
    return {"request": {"method": method, "url": url, **request}}


def obs(subject: str, code: str = "8867-4", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": subject}, **extra}


async def send(client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    return await client.post("", content=body, headers={**FHIR, **headers})


async def ids(client: httpx.AsyncClient, query: str) -> list[str]:
    found = (await client.get(query)).json()
    return sorted(e["resource"]["id"] for e in found.get("entry", []) if e["search"]["mode"] == "match")


async def history_total(client: httpx.AsyncClient) -> int:
    return int((await client.get("/_history", params={"_count": "1"})).json()["total"])


# -- transaction: reference resolution -----------------------------------------------------------------------


async def test_transaction_resolves_urn_uuid_and_oid_everywhere(client: httpx.AsyncClient) -> None:
    patient = make_patient(identifier=[{"system": SYS, "value": "t-1"}])
    patient["text"] = {"status": "generated",
                       "div": f'<div xmlns="http://www.w3.org/1999/xhtml">see <a href="{U2}">the photo</a></div>'}
    media = {"resourceType": "Media", "status": "completed", "subject": {"reference": U1},
             "content": {"contentType": "image/png", "url": U2}}
    observation = obs(OID, derivedFrom=[{"reference": U2}])
    resp = await send(client, bundle("transaction", post(patient, U1), post(media, U2), post(observation),
                                     post({"resourceType": "Patient", "id": "ignored"}, OID)))
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["type"] == "transaction-response"
    locations = [e["response"]["location"] for e in result["entry"]]
    assert all(e["response"]["status"] == "201 Created" for e in result["entry"])
    patient_ref, media_ref, obs_ref, other_ref = (loc.split("/_history")[0] for loc in locations)
    assert other_ref != "Patient/ignored"  # POST ignores a client id
    for entry, location in zip(result["entry"], locations, strict=True):
        assert entry["response"]["etag"] == 'W/"1"' and entry["response"]["lastModified"]
        assert entry["fullUrl"].endswith(location.split("/_history")[0])

    stored_media = (await client.get(f"/{media_ref}")).json()
    assert stored_media["subject"]["reference"] == patient_ref
    assert stored_media["content"]["url"] == media_ref  # Attachment.url
    stored_obs = (await client.get(f"/{obs_ref}")).json()
    assert stored_obs["subject"]["reference"] == other_ref  # urn:oid
    assert stored_obs["derivedFrom"][0]["reference"] == media_ref
    stored_patient = (await client.get(f"/{patient_ref}")).json()
    assert f'href="{media_ref}"' in stored_patient["text"]["div"]  # narrative link
    # the references are searchable as rewritten
    assert await ids(client, f"/Observation?subject={other_ref}") == [obs_ref.split("/")[1]]


async def test_put_fullurl_maps_to_its_own_id_and_unknown_urn_is_rejected(client: httpx.AsyncClient) -> None:
    p = make_patient(id="px1")
    entry = put(p)
    entry["fullUrl"] = U1
    resp = await send(client, bundle("transaction", entry, post(obs(U1))))
    assert resp.status_code == 200, resp.text
    obs_ref = resp.json()["entry"][1]["response"]["location"].split("/_history")[0]
    assert (await client.get(f"/{obs_ref}")).json()["subject"]["reference"] == "Patient/px1"

    before = await history_total(client)
    resp = await send(client, bundle("transaction", post(make_patient()), post(obs(U2))))
    assert resp.status_code == 400
    issue = resp.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert U2 in issue["diagnostics"]
    assert await history_total(client) == before


async def test_conditional_references_zero_one_many(client: httpx.AsyncClient) -> None:
    for id, mrn in (("c1", "one"), ("c2", "dup"), ("c3", "dup")):
        await client.put(f"/Patient/{id}", content=jsonio.dumps(
            make_patient(id=id, identifier=[{"system": SYS, "value": mrn}])), headers=FHIR)
    one = await send(client, bundle("transaction", post(obs(f"Patient?identifier={SYS}|one"))))
    assert one.status_code == 200, one.text
    ref = one.json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert (await client.get(f"/{ref}")).json()["subject"]["reference"] == "Patient/c1"

    before = await history_total(client)
    for mrn, count in (("none", 0), ("dup", 2)):
        resp = await send(client, bundle("transaction", post(make_patient()),
                                         post(obs(f"Patient?identifier={SYS}|{mrn}"))))
        assert resp.status_code == 412, resp.text
        issue = resp.json()["issue"][0]
        assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
        assert f"matched {count} resources" in issue["diagnostics"]
    assert await history_total(client) == before


# -- transaction: conditional interactions -----------------------------------------------------------------


async def test_if_none_exist_zero_one_many_and_references_follow_the_match(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/e1", content=jsonio.dumps(
        make_patient(id="e1", identifier=[{"system": SYS, "value": "exists"}])), headers=FHIR)
    found = post(make_patient(identifier=[{"system": SYS, "value": "exists"}]), U1,
                 ifNoneExist=f"identifier={SYS}|exists")
    fresh = post(make_patient(identifier=[{"system": SYS, "value": "fresh"}]), U2,
                 ifNoneExist=f"identifier={SYS}|fresh")
    resp = await send(client, bundle("transaction", found, fresh, post(obs(U1)), post(obs(U2, "1234-5"))))
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["location"] == "Patient/e1/_history/1"
    assert entries[1]["response"]["status"] == "201 Created"
    fresh_ref = entries[1]["response"]["location"].split("/_history")[0]
    assert (await client.get("/Patient/e1/_history")).json()["total"] == 1  # not written again
    o1 = entries[2]["response"]["location"].split("/_history")[0]
    o2 = entries[3]["response"]["location"].split("/_history")[0]
    assert (await client.get(f"/{o1}")).json()["subject"]["reference"] == "Patient/e1"
    assert (await client.get(f"/{o2}")).json()["subject"]["reference"] == fresh_ref

    # the same ifNoneExist twice in one transaction is one resource
    twice = [post(make_patient(identifier=[{"system": SYS, "value": "twice"}]), u,
                  ifNoneExist=f"identifier={SYS}|twice") for u in (U1, U2)]
    resp = await send(client, bundle("transaction", *twice, post(obs(U2))))
    assert resp.status_code == 200, resp.text
    e = resp.json()["entry"]
    assert e[0]["response"]["status"] == "201 Created" and e[1]["response"]["status"] == "200 OK"
    assert e[0]["response"]["location"] == e[1]["response"]["location"]
    assert len(await ids(client, f"/Patient?identifier={SYS}|twice")) == 1

    # several matches: 412 and nothing stored
    await client.post("/Patient", content=jsonio.dumps(
        make_patient(identifier=[{"system": SYS, "value": "exists"}])), headers=FHIR)
    before = await history_total(client)
    resp = await send(client, bundle("transaction", post(make_patient()), found))
    assert resp.status_code == 412
    assert resp.json()["issue"][0]["expression"] == ["Bundle.entry[1].request.ifNoneExist"]
    assert await history_total(client) == before


async def test_conditional_put_and_delete_and_if_match(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/u1", content=jsonio.dumps(
        make_patient(id="u1", identifier=[{"system": SYS, "value": "u1"}])), headers=FHIR)
    await client.put("/Patient/d1", content=jsonio.dumps(
        make_patient(id="d1", identifier=[{"system": SYS, "value": "d1"}])), headers=FHIR)
    update = put(make_patient(identifier=[{"system": SYS, "value": "u1"}], gender="male"),
                 f"Patient?identifier={SYS}|u1")
    create = put(make_patient(identifier=[{"system": SYS, "value": "new"}]), f"Patient?identifier={SYS}|new")
    create["fullUrl"] = U1
    resp = await send(client, bundle("transaction", update, create, req("DELETE", f"Patient?identifier={SYS}|d1"),
                                     post(obs(U1)), put(make_patient(id="m1"))))
    assert resp.status_code == 200, resp.text
    e = resp.json()["entry"]
    assert e[0]["response"]["status"] == "200 OK" and e[0]["response"]["location"] == "Patient/u1/_history/2"
    assert e[1]["response"]["status"] == "201 Created"
    new_ref = e[1]["response"]["location"].split("/_history")[0]
    assert e[2]["response"]["status"] == "204 No Content"
    assert (await client.get("/Patient/d1")).status_code == 410
    assert (await client.get("/Patient/u1")).json()["gender"] == "male"
    o = e[3]["response"]["location"].split("/_history")[0]
    assert (await client.get(f"/{o}")).json()["subject"]["reference"] == new_ref

    # ifMatch: the right version applies, a stale one fails the whole transaction naming the entry
    ok = put(make_patient(id="u1", active=False), ifMatch='W/"2"')
    resp = await send(client, bundle("transaction", ok))
    assert resp.status_code == 200 and resp.json()["entry"][0]["response"]["etag"] == 'W/"3"'
    before = await history_total(client)
    stale = put(make_patient(id="u1", active=True), ifMatch='W/"2"')
    resp = await send(client, bundle("transaction", post(make_patient()), put(make_patient(id="m2")), stale))
    assert resp.status_code == 412
    assert resp.json()["issue"][0]["expression"] == ["Bundle.entry[2].request.ifMatch"]
    assert (await client.get("/Patient/m2")).status_code == 404
    assert await history_total(client) == before


async def test_patch_entries(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/pa", content=jsonio.dumps(make_patient(id="pa", active=True)), headers=FHIR)
    fhirpath = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.active"},
        {"name": "value", "valueBoolean": False}]}]}
    json_patch = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                  "data": base64.b64encode(b'[{"op": "add", "path": "/gender", "value": "other"}]').decode()}
    resp = await send(client, bundle("transaction",
                                     {"resource": fhirpath, "request": {"method": "PATCH", "url": "Patient/pa"}}))
    assert resp.status_code == 200, resp.text
    resp = await send(client, bundle("transaction", {"resource": json_patch, "request": {
        "method": "PATCH", "url": "Patient/pa", "ifMatch": 'W/"2"'}}))
    assert resp.status_code == 200, resp.text
    stored = (await client.get("/Patient/pa")).json()
    assert stored["active"] is False and stored["gender"] == "other" and stored["meta"]["versionId"] == "3"


# -- transaction: processing order and atomicity --------------------------------------------------------------


async def test_processing_order_delete_post_put_then_get(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/o1", content=jsonio.dumps(
        make_patient(id="o1", identifier=[{"system": SYS, "value": "order"}])), headers=FHIR)
    # listed GET, PUT, POST(ifNoneExist), DELETE: the DELETE runs first, so the conditional create finds nothing
    # and creates; the GET runs last and sees every write.
    resp = await send(client, bundle(
        "transaction",
        req("GET", f"Patient?identifier={SYS}|order"),
        put(make_patient(id="o2", identifier=[{"system": SYS, "value": "other"}])),
        post(make_patient(identifier=[{"system": SYS, "value": "order"}]), ifNoneExist=f"identifier={SYS}|order"),
        req("DELETE", "Patient/o1"),
    ))
    assert resp.status_code == 200, resp.text
    e = resp.json()["entry"]
    assert [x["response"]["status"] for x in e] == ["200 OK", "201 Created", "201 Created", "204 No Content"]
    created = e[2]["response"]["location"].split("/")[1]
    assert created != "o1"
    searchset = e[0]["resource"]
    assert searchset["type"] == "searchset"
    assert [x["resource"]["id"] for x in searchset["entry"]] == [created]
    # versions were written in the processing order: the delete before the creates
    system = (await client.get("/_history", params={"_count": "3"})).json()
    assert [x["request"]["method"] for x in reversed(system["entry"])] == ["DELETE", "POST", "PUT"]


async def test_invalid_entry_leaves_the_store_unchanged(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/keep", content=jsonio.dumps(make_patient(id="keep", active=True)), headers=FHIR)
    await client.put("/Patient/keep2", content=jsonio.dumps(make_patient(id="keep2")), headers=FHIR)
    before = await history_total(client)
    entries = [post(make_patient(identifier=[{"system": SYS, "value": f"bad-{i}"}])) for i in range(7)]
    entries.append(post({"resourceType": "Patient", "gender": "sometimes"}))  # not in the required value set
    entries.append(put(make_patient(id="keep", active=False)))
    entries.append(req("DELETE", "Patient/keep2"))
    resp = await send(client, bundle("transaction", *entries))
    assert resp.status_code in (400, 422), resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(x.startswith("Bundle.entry[7].resource.gender") for i in outcome["issue"]
               for x in i.get("expression", []))
    assert await history_total(client) == before
    assert await ids(client, f"/Patient?identifier={SYS}|bad-0") == []
    kept = (await client.get("/Patient/keep")).json()
    assert kept["active"] is True and kept["meta"]["versionId"] == "1"
    assert (await client.get("/Patient/keep/_history")).json()["total"] == 1
    assert (await client.get("/Patient/keep2")).status_code == 200


async def test_deletes_come_first_and_one_resource_is_written_once(client: httpx.AsyncClient) -> None:
    for id in ("r1", "r2"):
        await client.put(f"/Patient/{id}", content=jsonio.dumps(
            make_patient(id=id, identifier=[{"system": SYS, "value": "r"}])), headers=FHIR)
    resp = await send(client, bundle("transaction", post(make_patient(id="x"), U1), req("DELETE", "Patient/r1"),
                                     put(make_patient(), f"Patient?identifier={SYS}|r")))
    # r1 is deleted first inside the transaction, so the conditional update matches only r2: success
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"][2]["response"]["location"] == "Patient/r2/_history/2"
    await client.put("/Patient/r3", content=jsonio.dumps(
        make_patient(id="r3", identifier=[{"system": SYS, "value": "r"}])), headers=FHIR)
    before = await history_total(client)
    resp = await send(client, bundle("transaction", post(make_patient()), req("DELETE", "Patient/r2"),
                                     put(make_patient(active=True), f"Patient?identifier={SYS}|r"),
                                     put(make_patient(id="r3", active=False), f"Patient?identifier={SYS}|r")))
    # two entries write the same resource r3: refused before anything is written
    assert resp.status_code == 400
    assert "Bundle.entry[3]" in resp.json()["issue"][0]["diagnostics"]
    assert (await client.get("/Patient/r2")).status_code == 200
    assert await history_total(client) == before


async def test_stale_plan_is_retried_and_store_decides(client: httpx.AsyncClient, app: Any) -> None:
    """A concurrent writer changes what a transaction was planned on: the repository refuses the stale plan
    (ConcurrentChange) and the transaction is planned again, so the reference follows the real match."""
    repo = app.state.fhir.repo
    real_find, real_find_many = repo.find, repo.find_many
    calls = {"n": 0}

    async def stale_find(query: Any, limit: int = 2) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 1:  # the first plan sees the store before a concurrent create
            return []
        return list(await real_find(query, limit))

    async def stale_find_many(queries: Any) -> list[list[str]]:  # the plan's look-ups in one round trip
        calls["n"] += 1
        if calls["n"] == 1:
            return [[] for _ in queries]
        return list(await real_find_many(queries))

    await client.put("/Patient/s1", content=jsonio.dumps(
        make_patient(id="s1", identifier=[{"system": SYS, "value": "s"}])), headers=FHIR)
    repo.find, repo.find_many = stale_find, stale_find_many
    try:
        resp = await send(client, bundle("transaction", post(make_patient(identifier=[{"system": SYS, "value": "s"}]),
                                                             U1, ifNoneExist=f"identifier={SYS}|s"),
                                         post(obs(U1))))
    finally:
        repo.find, repo.find_many = real_find, real_find_many
    assert resp.status_code == 200, resp.text
    assert calls["n"] >= 2
    e = resp.json()["entry"]
    assert e[0]["response"]["location"] == "Patient/s1/_history/1"
    o = e[1]["response"]["location"].split("/_history")[0]
    assert (await client.get(f"/{o}")).json()["subject"]["reference"] == "Patient/s1"
    assert len(await ids(client, f"/Patient?identifier={SYS}|s")) == 1


async def test_get_entry_conditional_headers_and_prefer(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/g1", content=jsonio.dumps(make_patient(id="g1")), headers=FHIR)
    resp = await send(client, bundle("transaction", req("GET", "Patient/g1", ifNoneMatch='W/"1"'),
                                     req("GET", "Patient/g1"), post(make_patient())),
                      Prefer="return=representation")
    e = resp.json()["entry"]
    assert e[0]["response"]["status"] == "304 Not Modified" and "resource" not in e[0]
    assert e[1]["resource"]["id"] == "g1" and e[1]["response"]["etag"] == 'W/"1"'
    assert e[2]["resource"]["resourceType"] == "Patient" and e[2]["resource"]["meta"]["versionId"] == "1"
    minimal = await send(client, bundle("transaction", post(make_patient())))
    assert "resource" not in minimal.json()["entry"][0]
    outcome = await send(client, bundle("transaction", post(make_patient())), Prefer="return=OperationOutcome")
    assert outcome.json()["entry"][0]["response"]["outcome"]["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("entry", "status", "expression"), [
    ({"request": {"method": "POST", "url": "Patient"}}, 400, "Bundle.entry[0].resource"),
    ({"request": {"method": "FETCH", "url": "Patient"}}, 400, "Bundle.entry[0].request.method"),
    ({"resource": make_patient(), "request": {"method": "POST", "url": "Observation"}}, 400,
     "Bundle.entry[0].resource.resourceType"),
    ({"resource": make_patient(), "request": {"method": "POST", "url": "Patient/1/2"}}, 400,
     "Bundle.entry[0].request.url"),
    ({"resource": make_patient(), "request": {"method": "PUT", "url": "Patient/bad id"}}, 400,
     "Bundle.entry[0].request.url"),
    ({"resource": make_patient(), "request": {"method": "POST", "url": "Nonsense"}}, 404, "Bundle.entry[0]"),
    ({"resource": make_patient()}, 400, "Bundle.entry[0].request"),
])
async def test_malformed_entries_are_named(client: httpx.AsyncClient, entry: dict[str, Any], status: int,
                                           expression: str) -> None:
    resp = await send(client, bundle("transaction", entry))
    assert resp.status_code == status, resp.text
    exprs = [x for i in resp.json()["issue"] for x in i.get("expression", [])]
    assert expression in exprs or any(x.startswith(expression) for x in exprs), exprs


async def test_only_batch_and_transaction_are_processed_other_bundles_are_stored(
    client: httpx.AsyncClient,
) -> None:
    document = {"resourceType": "Bundle", "type": "document", "identifier": {"system": SYS, "value": "doc-1"},
                "timestamp": "2026-11-27T10:00:00Z",
                "entry": [{"fullUrl": U1, "resource": {"resourceType": "Composition", "status": "final",
                                                        "type": {"text": "summary"}, "date": "2026-11-27",
                                                        "author": [{"display": "Dr A"}], "title": "S"}}]}
    resp = await send(client, jsonio.dumps(document))
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["Bundle.type"]
    for kind, extra in (("document", document), ("collection", {}), ("message", {})):
        body = extra or {"resourceType": "Bundle", "type": kind}
        if kind == "message":
            body = {"resourceType": "Bundle", "type": "message", "entry": [{"fullUrl": U2, "resource": {
                "resourceType": "MessageHeader", "eventCoding": {"system": "s", "code": "e"},
                "source": {"endpoint": "http://x"}}}]}
        stored = await client.post("/Bundle", content=jsonio.dumps(body), headers=FHIR)
        assert stored.status_code == 201, stored.text
        assert (await client.get(stored.headers["location"].split("/fhir")[1])).json()["type"] == kind
    not_a_bundle = await send(client, jsonio.dumps(make_patient()))
    assert not_a_bundle.status_code == 400


# -- batch -------------------------------------------------------------------------------------------------


async def test_batch_reports_each_entry_and_keeps_the_good_ones(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/b1", content=jsonio.dumps(make_patient(id="b1")), headers=FHIR)
    resp = await send(client, bundle(
        "batch",
        post(make_patient(identifier=[{"system": SYS, "value": "batch-ok"}])),
        post({"resourceType": "Patient", "gender": "sometimes"}),
        put(make_patient(id="b1", active=False), ifMatch='W/"7"'),
        req("GET", "Patient/b1"),
        req("GET", "Patient/missing"),
        req("DELETE", "Patient/b1"),
        {"request": {"method": "PUT"}},
        post(obs(U1)),
    ))
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith(("400", "422"))
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert statuses[2] == "412 Precondition Failed"
    assert statuses[3] == "410 Gone"  # GETs run last: the DELETE came first
    assert statuses[4] == "404 Not Found"
    assert statuses[5] == "204 No Content"
    assert statuses[6] == "400 Bad Request"
    assert statuses[7] == "400 Bad Request"  # batch entries cannot refer to each other
    assert "Bundle.entry[7].resource.subject.reference" in \
        result["entry"][7]["response"]["outcome"]["issue"][0]["expression"]
    assert len(await ids(client, f"/Patient?identifier={SYS}|batch-ok")) == 1

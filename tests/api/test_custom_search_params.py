"""SearchParameter resources created at run time: in force at once for new writes, back-filled over existing
data by a reindex job that is visible as a Task, and refused when their expression cannot be compiled."""

from __future__ import annotations

import httpx

from fhir_server import jsonio
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}
EYE = "http://example.org/fhir/StructureDefinition/eye-colour"


def eyed(colour: str, **kw: object) -> dict[str, object]:
    return make_patient(extension=[{"url": EYE, "valueCode": colour}], **kw)


def search_param(expression: str = f"Patient.extension.where(url='{EYE}').value") -> dict[str, object]:
    return {
        "resourceType": "SearchParameter",
        "url": "http://example.org/fhir/SearchParameter/patient-eye-colour",
        "name": "EyeColour",
        "status": "active",
        "description": "Eye colour recorded in an extension",
        "code": "eye-colour",
        "base": ["Patient"],
        "type": "token",
        "expression": expression,
    }


async def ids(client: httpx.AsyncClient, query: str) -> set[str]:
    r = await client.get(query)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"}


async def test_custom_parameter_takes_effect_and_is_backfilled(client: httpx.AsyncClient, app: object) -> None:
    for i, colour in enumerate(["brown", "blue", "blue"]):
        await client.put(f"/Patient/old{i}", content=jsonio.dumps(eyed(colour, id=f"old{i}")), headers=FHIR)
    # before the parameter exists, strict handling refuses it, lenient ignores it
    strict = await client.get("/Patient?eye-colour=blue", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["eye-colour"]

    created = await client.post("/SearchParameter", content=jsonio.dumps(search_param()), headers=FHIR)
    assert created.status_code == 201, created.text
    sp_id = created.json()["id"]

    # a resource written after the parameter is found at once
    await client.put("/Patient/new1", content=jsonio.dumps(eyed("blue", id="new1")), headers=FHIR)
    assert "new1" in await ids(client, "/Patient?eye-colour=blue")

    # the reindex job back-fills the old ones and reports on a Task
    await app.state.fhir.runner.drain()  # type: ignore[attr-defined]
    assert await ids(client, "/Patient?eye-colour=blue") == {"old1", "old2", "new1"}
    assert await ids(client, "/Patient?eye-colour=brown") == {"old0"}
    tasks = (await client.get(f"/Task?focus=SearchParameter/{sp_id}")).json()["entry"]
    assert len(tasks) == 1
    task = tasks[0]["resource"]
    assert task["status"] == "completed"
    # the three old patients at least; new1 too if the job reached it after it was written
    assert task["output"][0]["valueInteger"] in (3, 4)


async def test_uncompilable_expression_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/SearchParameter", content=jsonio.dumps(search_param("Patient.extension.where(")),
                          headers=FHIR)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["SearchParameter.expression"]
    assert (await client.get("/SearchParameter")).json()["total"] == 0


async def test_draft_parameters_are_stored_but_not_in_force(client: httpx.AsyncClient) -> None:
    draft = {**search_param(), "status": "draft"}
    assert (await client.post("/SearchParameter", content=jsonio.dumps(draft), headers=FHIR)).status_code == 201
    r = await client.get("/Patient?eye-colour=blue", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400

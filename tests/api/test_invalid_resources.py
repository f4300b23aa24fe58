"""Hand-made invalid resources are refused with 400/422, an OperationOutcome naming the element, and nothing is
written (neither the resource nor a history entry)."""

from __future__ import annotations

import httpx
import pytest

from fhir_server import jsonio
from tests.factories import make_observation, make_patient

FHIR = {"Content-Type": "application/fhir+json"}

CASES = [
    # (description, resource, expected status, expected issue code, expected expression)
    ("code outside a required binding", make_patient(id="x", gender="martian"), 422, "code-invalid",
     "Patient.gender"),
    ("unknown element", make_patient(id="x", favouriteColour="blue"), 400, "structure", "Patient.favouriteColour"),
    ("impossible date", make_patient(id="x", birthDate="2020-02-30"), 422, "value", "Patient.birthDate"),
    ("badly formed date", make_patient(id="x", birthDate="12/03/1984"), 400, "structure", "Patient.birthDate"),
    ("missing mandatory element", {k: v for k, v in make_observation(id="x").items() if k != "status"}, 422,
     "required", "Observation.status"),
    ("single value given as an array", make_patient(id="x", gender=["female"]), 400, "structure",
     "Patient.gender"),
    ("array given as a single value", make_patient(id="x", name={"family": "Ng"}), 400, "structure",
     "Patient.name"),
    ("wrong primitive type", make_patient(id="x", active="true"), 400, "structure", "Patient.active"),
    ("two choice variants", make_patient(id="x", deceasedBoolean=False, deceasedDateTime="2020-01-01"), 400,
     "structure", "Patient.deceasedDateTime"),
    ("decimal as a string", make_observation(id="x", valueQuantity={"value": "72.5", "unit": "kg"}), 400,
     "structure", "Observation.valueQuantity.value"),
]


@pytest.mark.parametrize(("description", "resource", "status", "code", "expression"), CASES,
                         ids=[c[0] for c in CASES])
async def test_invalid_resource_is_refused_and_nothing_written(
    client: httpx.AsyncClient, description: str, resource: dict[str, object], status: int, code: str,
    expression: str,
) -> None:
    rtype = resource["resourceType"]
    for response in (
        await client.put(f"/{rtype}/x", content=jsonio.dumps(resource), headers=FHIR),
        await client.post(f"/{rtype}", content=jsonio.dumps(resource), headers=FHIR),
    ):
        assert response.status_code == status, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert any(i["code"] == code and expression in i.get("expression", []) for i in outcome["issue"]), outcome
    assert (await client.get(f"/{rtype}/x")).status_code == 404
    assert (await client.get(f"/{rtype}/_history")).json()["total"] == 0


async def test_mismatched_id_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/a", content=jsonio.dumps(make_patient(id="b")), headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]
    assert (await client.get("/_history")).json()["total"] == 0

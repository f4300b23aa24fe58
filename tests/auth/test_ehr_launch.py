"""EHR launch: the EHR makes a launch context through the API, the app is launched with ``launch=…`` and gets that
context in its token; launches are single-use, bound to the user who made them and to their client."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.auth.conftest import FHIR, REDIRECT, World, front_channel, login_and_fetch, oauth_client

EHR_SCOPE = "launch openid fhirUser patient/*.rs launch/encounter"


async def _token(world: World, username: str, scope: str = "openid fhirUser user/*.rs") -> str:
    async with oauth_client(world, scope=scope) as client:
        token = await login_and_fetch(world, client, username)
    return str(token["access_token"])


async def _launch(world: World, bearer: str | None, **body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with world.http() as http:
        response = await http.post("/auth/launch", json=body, headers=headers)
    return response.status_code, response.json()


def _params(launch: str, client_id: str = "app") -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": EHR_SCOPE,
            "state": "s-1", "aud": FHIR, "launch": launch, "code_challenge": create_s256_code_challenge("v" * 50),
            "code_challenge_method": "S256"}


async def test_ehr_launch_passes_the_launch_context_into_the_token(world: World) -> None:
    status, made = await _launch(world, await _token(world, "doc"), patient="pat-b", encounter="enc-7",
                                 client_id="app", need_patient_banner=False)
    assert status == 201, made
    assert made["expires_in"] > 0
    async with oauth_client(world, scope=EHR_SCOPE) as client:
        token = await login_and_fetch(world, client, "doc", launch=made["launch"])
    assert (token["patient"], token["encounter"], token["need_patient_banner"]) == ("pat-b", "enc-7", False)
    assert set(token["scope"].split()) == set(EHR_SCOPE.split())
    access = world.service.authenticate(f"Bearer {token['access_token']}", FHIR)
    assert (access.patient, access.encounter, access.subject) == ("pat-b", "enc-7", "u-doc")


async def test_a_launch_works_once(world: World) -> None:
    _, made = await _launch(world, await _token(world, "doc"), patient="pat-a")
    first = await front_channel(world, "doc", _params(made["launch"]))
    assert "code" in first
    second = await front_channel(world, "doc", _params(made["launch"]))
    assert second["error"] == "invalid_request" and second["state"] == "s-1"


async def test_a_launch_is_bound_to_the_user_who_made_it(world: World) -> None:
    _, made = await _launch(world, await _token(world, "doc"), patient="pat-a")
    reply = await front_channel(world, "clerk", _params(made["launch"]))
    assert reply["error"] == "invalid_request"
    assert "another user" in reply["error_description"]


async def test_a_launch_is_bound_to_its_client(world: World) -> None:
    _, made = await _launch(world, await _token(world, "doc"), patient="pat-a", client_id="other-app")
    reply = await front_channel(world, "doc", _params(made["launch"], client_id="app"))
    assert reply["error"] == "invalid_request"


async def test_launch_api_needs_a_staff_token_and_a_known_patient(world: World) -> None:
    status, body = await _launch(world, None, patient="pat-a")
    assert status == 401 and body["resourceType"] == "OperationOutcome"
    status, body = await _launch(world, await _token(world, "alice", "openid fhirUser launch/patient patient/*.rs"),
                                 patient="pat-a")
    assert status == 403 and body["issue"][0]["code"] == "forbidden"
    staff = await _token(world, "doc")
    status, body = await _launch(world, staff, patient="pat-nobody")
    assert status == 400 and body["issue"][0]["expression"] == ["patient"]
    status, body = await _launch(world, staff, patient="pat-a", client_id="no-such-client")
    assert status == 400 and body["issue"][0]["expression"] == ["client_id"]
    status, body = await _launch(world, staff, patient="pat-a", user="bob")
    assert status == 403  # only an administrator binds a launch to someone else

"""Negative protocol tests: each broken or hostile request is refused with the OAuth error the RFCs name."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from fhir_server.auth.tokens import InvalidToken, mint_access_token
from tests.auth.conftest import (
    AUTHORIZE,
    FHIR,
    REDIRECT,
    TOKEN,
    World,
    front_channel,
    login_and_fetch,
    oauth_client,
    page_kind,
    post_form,
)

VERIFIER = "a-verifier-that-is-long-enough-for-pkce-0123456789"


def _params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "scope": "launch/patient patient/*.rs",
        "state": "st-1", "aud": FHIR, "code_challenge": create_s256_code_challenge(VERIFIER),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


async def _front(world: World, **overrides: str | None) -> dict[str, str]:
    return await front_channel(world, "alice", _params(**overrides))


@pytest.mark.parametrize(("overrides", "error"), [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),  # no PKCE
    ({"code_challenge": VERIFIER, "code_challenge_method": "plain"}, "invalid_request"),  # plain PKCE
    ({"code_challenge_method": None}, "invalid_request"),  # method missing means plain
    ({"aud": "https://elsewhere.example.org/fhir"}, "invalid_request"),  # wrong aud
    ({"aud": None}, "invalid_request"),  # no aud
    ({"scope": None}, "invalid_scope"),
    ({"scope": "system/*.rs"}, "invalid_scope"),  # nothing grantable in an interactive flow
    ({"launch": "no-such-launch", "scope": "launch patient/*.rs"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
async def test_bad_authorization_requests_are_sent_back_with_an_error(world: World, overrides: dict[str, str | None],
                                                                     error: str) -> None:
    reply = await _front(world, **overrides)
    assert reply["error"] == error
    assert reply["state"] == "st-1"
    assert "code" not in reply


@pytest.mark.parametrize("overrides", [
    {"redirect_uri": "https://app.example.org/callback/other"},  # not the registered URI exactly
    {"redirect_uri": "https://evil.example.org/callback"},
    {"redirect_uri": None},
    {"client_id": "nobody"},
])
async def test_requests_that_cannot_be_sent_back_show_an_error_page(world: World, overrides: dict[str, str | None]
                                                                   ) -> None:
    async with world.http() as http:
        response = await http.get(f"{AUTHORIZE}?{urlencode(_params(**overrides))}")
    assert response.status_code == 400
    assert page_kind(response.text) == "Cannot continue"
    assert "location" not in response.headers


async def _code(world: World) -> dict[str, str]:
    reply = await _front(world)
    assert "code" in reply, reply
    return reply


def _exchange(code: str, **overrides: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                   "client_id": "app", "code_verifier": VERIFIER}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


async def test_wrong_code_verifier_is_invalid_grant(world: World) -> None:
    code = (await _code(world))["code"]
    response = await post_form(world, TOKEN, _exchange(code, code_verifier="x" * 50))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_missing_code_verifier_is_invalid_request(world: World) -> None:
    code = (await _code(world))["code"]
    response = await post_form(world, TOKEN, _exchange(code, code_verifier=None))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_reused_code_is_refused_and_revokes_what_it_issued(world: World) -> None:
    code = (await _code(world))["code"]
    first = await post_form(world, TOKEN, _exchange(code))
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]
    world.service.authenticate(f"Bearer {token}", FHIR)
    second = await post_form(world, TOKEN, _exchange(code))
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    with pytest.raises(InvalidToken, match="revoked"):
        world.service.authenticate(f"Bearer {token}", FHIR)


async def test_redirect_uri_at_the_token_endpoint_must_match(world: World) -> None:
    code = (await _code(world))["code"]
    response = await post_form(world, TOKEN, _exchange(code, redirect_uri="https://app.example.org/other"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_code_of_another_client_is_invalid_grant(world: World) -> None:
    code = (await _code(world))["code"]
    response = await post_form(world, TOKEN, _exchange(code, client_id="other-app"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_unknown_grant_type_and_client(world: World) -> None:
    response = await post_form(world, TOKEN, {"grant_type": "password", "username": "a", "password": "b",
                                              "client_id": "app"})
    assert response.json()["error"] == "unsupported_grant_type"
    response = await post_form(world, TOKEN, _exchange("whatever", client_id="nobody"))
    assert response.json()["error"] == "invalid_client"


async def test_refresh_by_another_client_is_invalid_grant(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice")
    response = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "other-app",
                                              "refresh_token": token["refresh_token"]})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    # the rightful client still can
    own = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                         "refresh_token": token["refresh_token"]})
    assert own.status_code == 200, own.text


async def test_tampered_expired_and_foreign_tokens_are_refused(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice")
    access = token["access_token"]
    header, payload, signature = access.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(InvalidToken, match="signature"):
        world.service.authenticate(f"Bearer {header}.{payload}.{flipped}", FHIR)
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["patient"] = "pat-b"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(InvalidToken, match="signature"):
        world.service.authenticate(f"Bearer {header}.{forged}.{signature}", FHIR)
    keys = world.service.keys
    expired, _ = mint_access_token(keys, issuer=FHIR, audience=FHIR, subject="u-alice", client_id="app",
                                   scope="patient/*.rs", lifetime_s=60, kind="patient", patient="pat-a",
                                   now=int(time.time()) - 120)
    with pytest.raises(InvalidToken, match="expired"):
        world.service.authenticate(f"Bearer {expired}", FHIR)
    with pytest.raises(InvalidToken, match="aud"):
        world.service.core.validator.validate(access, audience="https://other.example.org/fhir", issuer=FHIR)
    with pytest.raises(InvalidToken, match="iss"):
        world.service.core.validator.validate(access, audience=FHIR, issuer="https://other.example.org/fhir")
    with pytest.raises(InvalidToken, match="at\\+jwt"):
        world.service.authenticate(f"Bearer {token['id_token']}", FHIR)
    with pytest.raises(InvalidToken):
        world.service.authenticate("Basic abc", FHIR)
    with pytest.raises(InvalidToken) as missing:
        world.service.authenticate(None, FHIR)
    assert missing.value.status == 401
    assert missing.value.headers["WWW-Authenticate"].startswith("Bearer")

"""End-to-end standalone launch with authlib's OAuth client: patient and clinician, refresh, introspection,
revocation, id tokens."""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.conftest import (
    FHIR,
    INTROSPECT,
    REVOKE,
    TOKEN,
    World,
    authorize,
    login_and_fetch,
    oauth_client,
    post_form,
)


async def _jwks(world: World) -> KeySet:
    async with world.http() as http:
        return KeySet.import_key_set((await http.get("/auth/jwks")).json())


async def test_patient_standalone_launch_gets_own_patient_and_id_token(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice", nonce="n-123")
    assert token["token_type"] == "Bearer"
    assert token["patient"] == "pat-a"
    assert token["need_patient_banner"] is True
    assert 0 < token["expires_in"] <= 3600
    assert set(token["scope"].split()) >= {"launch/patient", "patient/*.cruds", "openid", "fhirUser"}
    keys = await _jwks(world)
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.claims["aud"] == "app"
    assert id_token.claims["iss"] == FHIR
    assert id_token.claims["fhirUser"] == f"{FHIR}/Patient/pat-a"
    assert id_token.claims["nonce"] == "n-123"
    access = world.service.authenticate(f"Bearer {token['access_token']}", FHIR)
    assert access.patient == "pat-a"
    assert access.kind == "patient"
    assert access.fhir_user == "Patient/pat-a"
    assert access.client_id == "app"
    assert access.may("read", "Observation", "patient")
    assert not access.may("read", "Observation", "system")


async def test_clinician_picks_a_patient_in_the_picker(world: World) -> None:
    async with oauth_client(world, scope="openid fhirUser launch/patient patient/*.rs user/Practitioner.r") as client:
        token = await login_and_fetch(world, client, "doc", pick="pat-b")
    assert token["patient"] == "pat-b"
    access = world.service.authenticate(f"Bearer {token['access_token']}", FHIR)
    assert (access.kind, access.fhir_user, access.roles) == ("staff", "Practitioner/prac-1", frozenset({"physician"}))
    assert access.patient == "pat-b"


async def test_picker_searches_patients_by_name(world: World) -> None:
    from tests.auth.conftest import AUTHORIZE, Browser, forms, page_kind

    async with oauth_client(world, scope="launch/patient patient/*.rs") as client, world.http() as http:
        url, _ = client.create_authorization_url(AUTHORIZE, code_verifier="v" * 50, aud=FHIR)
        browser = Browser(http)
        page = await browser.login(await browser.go(url), "doc")
        assert page_kind(page.text) == "Choose a patient"
        assert {v for _, v in forms(page.text)[-1].radios} == {"pat-a", "pat-b"}
        found = await browser.submit(page, values={"patient_query": "Baker"}, index=0)
        assert [v for _, v in forms(found.text)[-1].radios] == ["pat-b"]


async def test_user_approves_a_subset_of_the_scopes(world: World) -> None:
    keep = {"openid", "fhirUser", "launch/patient", "patient/*.cruds"}
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice", keep_scopes=keep)
    assert set(token["scope"].split()) == keep
    assert "refresh_token" not in token  # neither offline_access nor online_access was approved
    access = world.service.authenticate(f"Bearer {token['access_token']}", FHIR)
    assert not access.may("read", "Patient", "user")


async def test_denied_consent_redirects_with_access_denied_and_the_state_unchanged(world: World) -> None:
    state = "s t&a=te/ü?"
    async with oauth_client(world) as client:
        done = await authorize(world, client, "alice", deny=True, state=state)
    assert done.callback.startswith("https://app.example.org/callback?")
    assert done.params["error"] == "access_denied"
    assert done.params["state"] == state


async def test_state_comes_back_unchanged_with_the_code(world: World) -> None:
    state = "xyz-ÄÖ %20 & = + /"
    async with oauth_client(world) as client:
        done = await authorize(world, client, "alice", state=state)
    assert done.params["state"] == state and done.params["code"]


async def test_refresh_tokens_rotate_and_a_reused_one_ends_the_grant(world: World) -> None:
    async with oauth_client(world) as client:
        first = await login_and_fetch(world, client, "alice")
        assert first["refresh_token"]
        second = await client.refresh_token(TOKEN, refresh_token=first["refresh_token"], scope=first["scope"])
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["patient"] == "pat-a" and second["scope"] == first["scope"]
        world.service.authenticate(f"Bearer {second['access_token']}", FHIR)
        replay = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                                "refresh_token": first["refresh_token"]})
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # the replay revoked the whole grant: the rotated refresh token and its access token are dead too
        after = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                               "refresh_token": second["refresh_token"]})
        assert after.json()["error"] == "invalid_grant"
    from fhir_server.auth.tokens import InvalidToken

    try:
        world.service.authenticate(f"Bearer {second['access_token']}", FHIR)
    except InvalidToken as exc:
        assert "revoked" in exc.diagnostics
    else:
        raise AssertionError("an access token of a revoked grant was accepted")


async def test_refresh_may_narrow_but_not_widen_the_scope(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice",
                                      keep_scopes={"launch/patient", "patient/*.cruds", "offline_access"})
        wider = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                               "refresh_token": token["refresh_token"],
                                               "scope": "patient/*.cruds user/*.cruds offline_access"})
        assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
        narrower = await client.refresh_token(TOKEN, refresh_token=token["refresh_token"],
                                              scope="patient/*.cruds offline_access")
    assert narrower["scope"] == "patient/*.cruds offline_access"


async def test_online_access_refresh_token_ends_with_the_login_session(world: World) -> None:
    from tests.auth.conftest import Browser, forms

    keep = {"launch/patient", "patient/*.cruds", "online_access"}
    async with oauth_client(world) as client, world.http() as http:
        browser = Browser(http)
        done = await authorize(world, client, "alice", keep_scopes=keep, browser=browser)
        token = await client.fetch_token(TOKEN, authorization_response=done.callback, code_verifier=done.verifier)
        refreshed = await client.refresh_token(TOKEN, refresh_token=token["refresh_token"], scope=token["scope"])
        page = await http.get("/auth/logout")
        form = forms(page.text)[0]
        out = await http.post("/auth/logout", data=dict(form.fields))
        assert out.status_code == 200
        gone = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                              "refresh_token": refreshed["refresh_token"]})
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"


async def _introspect(world: World, token: str, **auth: Any) -> dict[str, Any]:
    async with world.http() as http:
        response = await http.post(INTROSPECT, data={"token": token, **auth.pop("data", {})}, **auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def test_introspection_and_revocation_of_access_and_refresh_tokens(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice")
        basic = {"auth": ("portal", world.secrets["portal"])}
        info = await _introspect(world, token["access_token"], **basic)
        assert info["active"] is True
        assert (info["client_id"], info["sub"], info["patient"], info["aud"]) == ("app", "u-alice", "pat-a", FHIR)
        assert info["scope"] == token["scope"] and info["token_type"] == "Bearer"
        assert info["fhirUser"] == "Patient/pat-a" and info["exp"] > info["iat"]
        # a refresh token is introspected only by the client it was issued to
        own = await _introspect(world, token["refresh_token"], data={"client_id": "app"})
        assert own["active"] is True and own["token_type"] == "refresh_token"
        assert (await _introspect(world, token["refresh_token"], **basic)) == {"active": False}
        # revoke the access token (the client library sends it to the RFC 7009 endpoint)
        revoked = await client.revoke_token(REVOKE, token=token["access_token"], token_type_hint="access_token")
        assert revoked.status_code == 200
        assert (await _introspect(world, token["access_token"], **basic)) == {"active": False}
        # revoke the refresh token: the grant ends, and refreshing is refused
        fresh = await client.refresh_token(TOKEN, refresh_token=token["refresh_token"], scope=token["scope"])
        revoked = await client.revoke_token(REVOKE, token=fresh["refresh_token"], token_type_hint="refresh_token")
        assert revoked.status_code == 200
        refused = await post_form(world, TOKEN, {"grant_type": "refresh_token", "client_id": "app",
                                                 "refresh_token": fresh["refresh_token"]})
        assert refused.json()["error"] == "invalid_grant"
        assert (await _introspect(world, fresh["access_token"], **basic)) == {"active": False}
    assert (await _introspect(world, "not-a-token", **basic)) == {"active": False}


async def test_revocation_of_another_clients_token_is_refused(world: World) -> None:
    async with oauth_client(world) as client:
        token = await login_and_fetch(world, client, "alice")
    async with world.http() as http:
        response = await http.post(REVOKE, data={"token": token["refresh_token"]},
                                   auth=("portal", world.secrets["portal"]))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert (await _introspect(world, token["refresh_token"], data={"client_id": "app"}))["active"] is True


async def test_confidential_client_authenticates_with_its_secret(world: World) -> None:
    scope = "openid fhirUser launch/patient patient/*.rs"
    async with oauth_client(world, "portal", scope=scope, client_secret=world.secrets["portal"],
                            token_endpoint_auth_method="client_secret_basic") as client:
        token = await login_and_fetch(world, client, "bob")
    assert token["patient"] == "pat-b"
    async with oauth_client(world, "portal", scope=scope, client_secret="wrong",
                            token_endpoint_auth_method="client_secret_basic") as client:
        done = await authorize(world, client, "bob")
        response = await post_form(world, TOKEN, {"grant_type": "authorization_code", "code": done.params["code"],
                                                  "redirect_uri": "https://app.example.org/callback",
                                                  "code_verifier": done.verifier})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


async def test_no_patient_context_without_launch_patient_or_patient_scopes(world: World) -> None:
    async with oauth_client(world, scope="openid fhirUser user/Practitioner.r") as client:
        token = await login_and_fetch(world, client, "doc")
    assert "patient" not in token and "need_patient_banner" not in token
    keys = await _jwks(world)
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["fhirUser"] == f"{FHIR}/Practitioner/prac-1" and claims["sub"] == "u-doc"

"""The administration API (clients, users, key rotation), the ``infirmary clients``/``users`` commands, discovery
documents and dynamic registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from joserfc.jwk import RSAKey

from fhir_server.auth.tokens import InvalidToken
from fhir_server.cli import main
from fhir_server.settings import AuthSettings, Settings, StorageSettings
from tests.auth.conftest import FHIR, REDIRECT, TOKEN, World, login_and_fetch, oauth_client


async def _admin_token(world: World, username: str = "root") -> str:
    async with oauth_client(world, "portal", scope="openid fhirUser infirmary/admin",
                            client_secret=world.secrets["portal"],
                            token_endpoint_auth_method="client_secret_basic") as client:
        token = await login_and_fetch(world, client, username)
    return str(token["access_token"])


async def _call(world: World, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with world.http() as http:
        response = await http.request(method, path, json=body, headers=headers)
    return response.status_code, (response.json() if response.content else None)


async def test_admin_registers_lists_and_removes_clients(world: World) -> None:
    token = await _admin_token(world)
    status, made = await _call(world, "POST", "/auth/admin/clients", token, {
        "client_name": "Pharmacy app", "token_endpoint_auth_method": "client_secret_post",
        "scope": "launch/patient patient/MedicationRequest.rs", "redirect_uris": ["https://pharm.example.org/cb"],
    })
    assert status == 201, made
    assert made["client_secret"] and made["token_endpoint_auth_method"] == "client_secret_post"
    stored = world.service.store.get_client(made["client_id"])
    assert stored is not None and stored.check_client_secret(made["client_secret"])
    assert made["client_secret"] not in json.dumps(stored.public())
    status, listed = await _call(world, "GET", "/auth/admin/clients", token)
    assert status == 200 and made["client_id"] in {c["client_id"] for c in listed}
    assert all("client_secret" not in c for c in listed)
    status, _ = await _call(world, "DELETE", f"/auth/admin/clients/{made['client_id']}", token)
    assert status == 204 and world.service.store.get_client(made["client_id"]) is None
    status, _ = await _call(world, "GET", f"/auth/admin/clients/{made['client_id']}", token)
    assert status == 404


@pytest.mark.parametrize(("body", "element"), [
    ({"client_name": "x", "scope": "patient/*.rs"}, "redirect_uris"),
    ({"client_name": "x", "scope": "patient/*.zz", "redirect_uris": [REDIRECT]}, "scope"),
    ({"client_name": "x", "scope": "patient/*.rs", "redirect_uris": ["http://example.org/cb"]}, "redirect_uris"),
    ({"client_name": "x", "scope": "system/*.rs", "grant_types": ["client_credentials"],
      "token_endpoint_auth_method": "private_key_jwt"}, "jwks"),
    ({"client_name": "x", "scope": "system/*.rs", "grant_types": ["client_credentials"]},
     "token_endpoint_auth_method"),
    ({"scope": "patient/*.rs", "redirect_uris": [REDIRECT]}, "client_name"),
])
async def test_bad_client_registrations_name_the_element(world: World, body: dict[str, Any], element: str) -> None:
    status, outcome = await _call(world, "POST", "/auth/admin/clients", await _admin_token(world), body)
    assert status == 400 and outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [element]


async def test_admin_creates_users_who_can_then_sign_in(world: World) -> None:
    token = await _admin_token(world)
    status, user = await _call(world, "POST", "/auth/admin/users", token, {
        "username": "pharma", "password": "pharmacist password", "kind": "staff", "roles": ["pharmacist"],
        "practitioner": "prac-9", "display_name": "Pat Pharmacist"})
    assert status == 201, user
    assert user["fhirUser"] == "Practitioner/prac-9" and "password" not in json.dumps(user)
    status, _ = await _call(world, "POST", "/auth/admin/users", token, {
        "username": "pharma", "password": "another password", "kind": "staff", "roles": ["nurse"]})
    assert status == 409
    status, outcome = await _call(world, "POST", "/auth/admin/users", token, {
        "username": "p2", "password": "a good password", "kind": "patient"})
    assert status == 400 and outcome["issue"][0]["expression"] == ["patient"]
    status, unlocked = await _call(world, "POST", f"/auth/admin/users/{user['id']}/unlock", token)
    assert status == 200 and unlocked["locked"] is False
    status, _ = await _call(world, "DELETE", f"/auth/admin/users/{user['id']}", token)
    assert status == 204 and world.service.store.get_user(user["id"]) is None


async def test_the_admin_api_refuses_everyone_else(world: World) -> None:
    status, outcome = await _call(world, "GET", "/auth/admin/clients", None)
    assert status == 401 and outcome["issue"][0]["code"] == "login"
    # a physician asking for the admin scope does not get it, so the API refuses the token
    physician = await _admin_token(world, "doc")
    status, outcome = await _call(world, "GET", "/auth/admin/users", physician)
    assert status == 403 and outcome["issue"][0]["code"] == "forbidden"
    async with world.http() as http:
        response = await http.get("/auth/admin/users", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_key_rotation_keeps_earlier_tokens_valid(world: World) -> None:
    token = await _admin_token(world)
    before = world.service.keys.kid
    status, rotated = await _call(world, "POST", "/auth/admin/keys/rotate", token)
    assert status == 200 and rotated["kid"] != before
    assert {k["kid"] for k in rotated["jwks"]["keys"]} == {before, rotated["kid"]}
    world.service.authenticate(f"Bearer {token}", FHIR)  # signed by the retired key: still good
    fresh = await _admin_token(world)
    header = json.loads(__import__("base64").urlsafe_b64decode(fresh.split(".")[0] + "=="))
    assert header["kid"] == rotated["kid"]
    async with world.http() as http:
        published = (await http.get("/auth/jwks")).json()
    assert {k["kid"] for k in published["keys"]} == {before, rotated["kid"]}
    assert all("d" not in k for k in published["keys"])  # public keys only


async def test_removed_user_loses_their_tokens(world: World) -> None:
    token = await _admin_token(world, "doc")
    world.service.authenticate(f"Bearer {token}", FHIR)
    world.service.store.remove_user("u-doc")
    with pytest.raises(InvalidToken, match="revoked"):
        world.service.authenticate(f"Bearer {token}", FHIR)


async def test_smart_configuration_has_every_required_field(world: World) -> None:
    async with world.http() as http:
        response = await http.get("/fhir/.well-known/smart-configuration")
        oidc = (await http.get("/fhir/.well-known/openid-configuration")).json()
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == FHIR and oidc["issuer"] == FHIR
    assert doc["jwks_uri"] == "http://localhost/auth/jwks"
    assert doc["authorization_endpoint"] == "http://localhost/auth/authorize"
    assert doc["token_endpoint"] == TOKEN
    assert doc["introspection_endpoint"] == "http://localhost/auth/introspect"
    assert doc["revocation_endpoint"] == "http://localhost/auth/revoke"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert {"launch-ehr", "launch-standalone", "permission-v2", "permission-v1", "context-standalone-patient",
            "sso-openid-connect", "client-confidential-asymmetric"} <= set(doc["capabilities"])
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(doc["scopes_supported"])
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "registration_endpoint" not in doc
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_dynamic_registration_is_off_by_default(world: World) -> None:
    async with world.http() as http:
        response = await http.post("/auth/register", json={"redirect_uris": [REDIRECT]})
    assert response.status_code == 404


@pytest.fixture
def open_registration(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    auth=AuthSettings(dynamic_registration=True))


async def test_dynamic_registration_when_enabled(open_registration: Settings) -> None:
    import httpx

    from fhir_server.app import create_app

    app = create_app(open_registration)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://localhost") as http:
        doc = (await http.get("/fhir/.well-known/smart-configuration")).json()
        assert doc["registration_endpoint"] == "http://localhost/auth/register"
        response = await http.post("/auth/register", json={
            "client_name": "Self-registered", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "scope": "launch/patient patient/*.rs openid fhirUser"})
        assert response.status_code == 201, response.text
        made = response.json()
        assert "client_secret" not in made
        client = app.state.auth.store.get_client(made["client_id"])
        assert client is not None and client.registration == "dynamic"
        assert client.check_redirect_uri(REDIRECT)
        for bad in ({"redirect_uris": [REDIRECT], "scope": "system/*.rs"},
                    {"redirect_uris": [REDIRECT], "scope": "patient/*.rs", "grant_types": ["client_credentials"]}):
            refused = await http.post("/auth/register", json=bad)
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata", bad


def test_clients_command_adds_lists_and_removes(tmp_path: Path) -> None:
    runner = CliRunner()
    key = RSAKey.generate_key(2048, {"kid": "k1"}, private=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    data = str(tmp_path / "data")
    added = runner.invoke(main, ["clients", "add", "--name", "Lab system", "--client-id", "lab", "--auth",
                                 "private_key_jwt", "--scope", "system/Observation.cruds", "--jwks-file", str(jwks),
                                 "--data-dir", data])
    assert added.exit_code == 0, added.output
    assert "client_id: lab" in added.output and "client_secret" not in added.output
    app = runner.invoke(main, ["clients", "add", "--name", "Portal", "--auth", "client_secret_basic", "--scope",
                               "launch/patient patient/*.rs", "--redirect-uri", REDIRECT, "--data-dir", data])
    assert app.exit_code == 0 and "client_secret: " in app.output
    listed = runner.invoke(main, ["clients", "list", "--json", "--data-dir", data])
    found = {c["client_id"]: c for c in json.loads(listed.output)}
    assert found["lab"]["grant_types"] == ["client_credentials"] and found["lab"]["jwks"]["keys"][0]["kid"] == "k1"
    bad = runner.invoke(main, ["clients", "add", "--name", "x", "--scope", "patient/*.rs", "--redirect-uri",
                               "http://example.org/cb", "--data-dir", data])
    assert bad.exit_code != 0 and "redirect_uris" in bad.output
    removed = runner.invoke(main, ["clients", "remove", "lab", "--data-dir", data])
    assert removed.exit_code == 0
    again = runner.invoke(main, ["clients", "remove", "lab", "--data-dir", data])
    assert again.exit_code != 0


def test_users_command_adds_an_administrator(tmp_path: Path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    added = runner.invoke(main, ["users", "add", "ada", "--kind", "staff", "--role", "administrator",
                                 "--data-dir", data], input="a strong password\na strong password\n")
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, ["users", "list", "--data-dir", data])
    assert "ada\tstaff\tadministrator" in listed.output

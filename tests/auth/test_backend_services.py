"""SMART Backend Services: ``client_credentials`` with ``private_key_jwt`` (RS384 and ES384, keys registered as a JWKS
or fetched from a JWKS URL), ``system/…`` scopes, and refusal of replayed or badly made client assertions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_server.auth.clients import build_client
from tests.auth.conftest import FHIR, INTROSPECT, TOKEN, World, post_form

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FreshPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """authlib's private_key_jwt, with the five-minute ``exp`` SMART asks for and a new ``jti`` every time."""

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        self.claims = {"exp": int(time.time()) + 240}
        return super().sign(auth, token_endpoint)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": "rsa-1"}, private=True)


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", {"kid": "ec-1"}, private=True)


def _public(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


@pytest.fixture
def jwks_server(ec_key: ECKey) -> Iterator[str]:
    """A JWKS URL on the loopback interface, as an external system would publish it."""
    body = json.dumps(_public(ec_key)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _register(world: World, client_id: str, scope: str, **keys: Any) -> None:
    client, _ = build_client(client_id=client_id, name=client_id, auth_method="private_key_jwt", scope=scope,
                             grant_types=["client_credentials"], allow_http_jwks_uri=True, **keys)
    world.service.store.add_client(client)


def _system_client(world: World, client_id: str, key: RSAKey | ECKey, alg: str, scope: str) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(client_id=client_id, client_secret=key, scope=scope, transport=world.transport,
                             token_endpoint_auth_method=FreshPrivateKeyJWT(TOKEN, alg=alg))


async def test_rs384_client_with_registered_jwks_gets_a_system_token(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.cruds system/DiagnosticReport.cruds system/Patient.rs",
              jwks=_public(rsa_key))
    async with _system_client(world, "lab", rsa_key, "RS384", "system/Observation.cruds system/Patient.r") as c:
        token = await c.fetch_token(TOKEN, grant_type="client_credentials")
        again = await c.fetch_token(TOKEN, grant_type="client_credentials")  # a new assertion each time
    assert token["scope"] == "system/Observation.cruds system/Patient.r"
    assert 0 < token["expires_in"] <= 300
    assert "refresh_token" not in token and "id_token" not in token
    access = world.service.authenticate(f"Bearer {token['access_token']}", FHIR)
    assert access.is_system and access.subject == "lab" and access.client_id == "lab"
    assert access.may("create", "Observation", "system") and not access.may("delete", "Patient")
    assert access.patient is None and access.fhir_user is None
    assert again["access_token"] != token["access_token"]


async def test_es384_client_with_a_jwks_url(world: World, ec_key: ECKey, jwks_server: str) -> None:
    _register(world, "insurer", "system/Coverage.rs system/Patient.rs", jwks_uri=jwks_server)
    async with _system_client(world, "insurer", ec_key, "ES384", "system/Coverage.rs") as c:
        token = await c.fetch_token(TOKEN, grant_type="client_credentials")
    assert token["scope"] == "system/Coverage.rs"
    assert world.service.authenticate(f"Bearer {token['access_token']}", FHIR).client_id == "insurer"


def _assertion(key: RSAKey | ECKey, alg: str, client_id: str = "lab", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN, "exp": now + 240, "jti": f"jti-{now}-{id(claims)}"}
    body.update(claims)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, body, key, algorithms=[alg])


def _form(assertion: str, scope: str = "system/Observation.rs") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}


async def test_a_replayed_client_assertion_is_refused(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    assertion = _assertion(rsa_key, "RS384", jti="once-only")
    first = await post_form(world, TOKEN, _form(assertion))
    assert first.status_code == 200, first.text
    replay = await post_form(world, TOKEN, _form(assertion))
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]


@pytest.mark.parametrize(("claims", "alg"), [
    ({"aud": "https://elsewhere.example.org/token"}, "RS384"),  # not this token endpoint
    ({"exp": int(time.time()) + 3600}, "RS384"),  # more than five minutes ahead
    ({"exp": int(time.time()) - 600}, "RS384"),  # expired
    ({"sub": "someone-else"}, "RS384"),  # iss and sub differ
    ({"jti": None}, "RS384"),  # no jti
    ({}, "RS256"),  # not RS384 / ES384
])
async def test_bad_client_assertions_are_invalid_client(world: World, rsa_key: RSAKey, claims: dict[str, Any],
                                                        alg: str) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    body = {k: v for k, v in claims.items() if v is not None}
    assertion = _assertion(rsa_key, alg, **body)
    if claims.get("jti", "") is None:
        assertion = jwt.encode({"alg": alg, "kid": rsa_key.kid},
                               {"iss": "lab", "sub": "lab", "aud": TOKEN, "exp": int(time.time()) + 200},
                               rsa_key, algorithms=[alg])
    response = await post_form(world, TOKEN, _form(assertion))
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


async def test_an_assertion_signed_by_an_unregistered_key_is_refused(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    stranger = RSAKey.generate_key(2048, {"kid": rsa_key.kid}, private=True)
    response = await post_form(world, TOKEN, _form(_assertion(stranger, "RS384")))
    assert response.json()["error"] == "invalid_client"


async def test_system_tokens_get_only_system_scopes_the_client_may_have(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    narrowed = await post_form(world, TOKEN, _form(_assertion(rsa_key, "RS384"), "system/*.cruds"))
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "system/Observation.rs"
    for scope in ("patient/Observation.rs", "launch openid", "system/Patient.rs", "system/Foo.rs"):
        refused = await post_form(world, TOKEN, _form(_assertion(rsa_key, "RS384", jti=scope), scope))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope", scope


async def test_a_system_token_can_be_introspected_by_its_client(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    token = (await post_form(world, TOKEN, _form(_assertion(rsa_key, "RS384")))).json()["access_token"]
    data = {"token": token, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(rsa_key, "RS384", aud=INTROSPECT, jti="introspect-1")}
    info = (await post_form(world, INTROSPECT, data)).json()
    assert info["active"] is True and info["client_id"] == "lab" and info["sub"] == "lab"


async def test_a_removed_client_loses_its_tokens(world: World, rsa_key: RSAKey) -> None:
    _register(world, "lab", "system/Observation.rs", jwks=_public(rsa_key))
    token = (await post_form(world, TOKEN, _form(_assertion(rsa_key, "RS384")))).json()["access_token"]
    world.service.authenticate(f"Bearer {token}", FHIR)
    assert world.service.store.remove_client("lab")
    from fhir_server.auth.tokens import InvalidToken

    with pytest.raises(InvalidToken, match="revoked"):
        world.service.authenticate(f"Bearer {token}", FHIR)

"""CORS: browser apps on other origins reach the FHIR API and the token endpoints, never the login pages."""

from __future__ import annotations

from pathlib import Path

import httpx

from fhir_server.settings import AuthSettings, ServerSettings, Settings, StorageSettings

from .conftest import ORIGIN, World

APP_ORIGIN = "https://app.example.org"


async def test_a_preflight_needs_no_token_and_allows_the_authorization_header(world: World) -> None:
    async with world.http() as http:
        response = await http.options("/fhir/Patient/pat-a", headers={
            "Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


async def test_api_answers_carry_cors_headers_even_when_refused(world: World) -> None:
    async with world.http() as http:
        refused = await http.get("/fhir/Patient/pat-a", headers={"Origin": APP_ORIGIN})
        config = await http.get("/fhir/.well-known/smart-configuration", headers={"Origin": APP_ORIGIN})
        token = await http.post("/auth/token", data={"grant_type": "client_credentials"},
                                headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401  # the app can read the refusal and its WWW-Authenticate
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]
    assert config.status_code == 200 and config.headers["access-control-allow-origin"] == "*"
    assert token.status_code in (400, 401) and token.headers["access-control-allow-origin"] == "*"


async def test_login_and_admin_pages_never_get_cors_headers(world: World) -> None:
    async with world.http() as http:
        login = await http.get("/auth/login", headers={"Origin": APP_ORIGIN})
        preflight = await http.options("/auth/admin/users", headers={
            "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert login.status_code == 200 and "access-control-allow-origin" not in login.headers
    assert "access-control-allow-origin" not in preflight.headers


async def test_only_configured_origins_are_allowed(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "t.db"),
                        auth=AuthSettings(), server=ServerSettings(cors_origins=[APP_ORIGIN]))
    app = create_app(settings)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http:
            allowed = await http.get("/fhir/metadata", headers={"Origin": APP_ORIGIN})
            other = await http.get("/fhir/metadata", headers={"Origin": "https://evil.example.com"})
            preflight = await http.options("/fhir/Patient", headers={
                "Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"})
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "origin" in allowed.headers["vary"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 400


async def test_cors_can_be_turned_off(tmp_path: Path) -> None:
    from fhir_server.app import create_app

    settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "t.db"),
                        server=ServerSettings(cors_origins=[]))
    app = create_app(settings)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http:
            response = await http.get("/fhir/metadata", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in response.headers

"""CORS: browser apps on other origins reach the FHIR API and the token endpoints, never the login pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


async def test_a_request_without_origin_is_answered_as_cors_middleware_would() -> None:
    """Requests without ``Origin`` skip CORSMiddleware; the answer must be byte for byte what it would have sent
    (``Vary: Origin`` joined with the app's own ``Vary`` values), for every shape of ``Vary`` an app may send."""
    from starlette.types import Message, Receive, Scope, Send

    from fhir_server.api.cors import ApiCorsMiddleware

    shapes: list[list[tuple[bytes, bytes]]] = [
        [], [(b"vary", b"Accept")], [(b"Vary", b"Accept, Accept-Encoding")],
        [(b"vary", b"Accept"), (b"content-type", b"application/fhir+json"), (b"vary", b"Prefer")],
        [(b"etag", b'W/"1"'), (b"location", b"Patient/1/_history/1")]]

    def app_for(headers: list[tuple[bytes, bytes]]) -> Any:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
            await send({"type": "http.response.body", "body": b"{}"})
        return app

    async def run(app: Any, path: str) -> list[Message]:
        sent: list[Message] = []
        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"host", b"x")], "query_string": b""}

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    for headers in shapes:
        for origins in (["*"], [APP_ORIGIN]):
            fast = await run(ApiCorsMiddleware(app_for(headers), origins), "/fhir/Patient/1")
            slow = await run(ApiCorsMiddleware(app_for(headers), origins).cors, "/fhir/Patient/1")
            assert fast == slow, (headers, origins)
            assert (b"vary", b"Origin") in fast[0]["headers"] or any(
                v.endswith(b", Origin") for k, v in fast[0]["headers"] if k == b"vary")
        untouched = await run(ApiCorsMiddleware(app_for(headers), ["*"]), "/auth/login")  # not a CORS path
        assert untouched[0]["headers"] == headers

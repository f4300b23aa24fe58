"""Fixtures for the authorization server: an app with users, clients and patients, a browser that fills in the
login/picker/consent forms, and authlib's OAuth client driving the flows through the ASGI app."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from fhir_server.auth.clients import build_client, build_user
from fhir_server.auth.models import User
from fhir_server.auth.service import AuthService
from fhir_server.settings import AuthSettings, Settings, StorageSettings

ORIGIN = "http://localhost"  # authlib's client accepts http:// for localhost only
FHIR = f"{ORIGIN}/fhir"
AUTHORIZE = f"{ORIGIN}/auth/authorize"
TOKEN = f"{ORIGIN}/auth/token"
INTROSPECT = f"{ORIGIN}/auth/introspect"
REVOKE = f"{ORIGIN}/auth/revoke"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"

APP_SCOPE = ("openid fhirUser profile launch launch/patient launch/encounter offline_access online_access patient/*.cruds "
             "user/*.cruds")


@pytest.fixture
def auth_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    auth=AuthSettings(allow_http_jwks_uri=True, jwks_cache_s=0))


@dataclass
class World:
    app: Any
    service: AuthService
    transport: httpx.ASGITransport
    secrets: dict[str, str] = field(default_factory=dict)

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url=ORIGIN, **kwargs)


@functools.cache
def _template(kind: str) -> User:
    """One argon2 hash per kind of user for the whole run (hashing is deliberately slow)."""
    extra: dict[str, Any] = {"patient": "x"} if kind == "patient" else {"roles": ["nurse"]}
    return build_user(username="template", password=PASSWORD, kind=kind, **extra)


def add_user(service: AuthService, username: str, kind: str, *, roles: list[str] = (),  # type: ignore[assignment]
             patient: str | None = None, practitioner: str | None = None) -> None:
    user = replace(_template(kind), id=f"u-{username}", username=username, display_name=username.title(),
                   roles=tuple(roles), patient_id=patient, practitioner_id=practitioner)
    service.store.add_user(user)


@pytest.fixture
async def world(auth_settings: Settings) -> AsyncIterator[World]:
    from fhir_server.app import create_app

    app = create_app(auth_settings)
    async with app.router.lifespan_context(app):
        yield await seed_world(app)


async def seed_world(app: Any) -> World:
    """The users, clients and patients of the tests, in a started app's stores."""
    service: AuthService = app.state.auth
    add_user(service, "alice", "patient", patient="pat-a")
    add_user(service, "bob", "patient", patient="pat-b")
    add_user(service, "doc", "staff", roles=["physician"], practitioner="prac-1")
    add_user(service, "clerk", "staff", roles=["billing-clerk"])
    add_user(service, "root", "staff", roles=["administrator"])
    world = World(app, service, httpx.ASGITransport(app=app))
    public, _ = build_client(client_id="app", name="Test App", auth_method="none", scope=APP_SCOPE,
                             redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"])
    other, _ = build_client(client_id="other-app", name="Other App", auth_method="none", scope=APP_SCOPE,
                            redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"])
    confidential, secret = build_client(
        client_id="portal", name="Portal", auth_method="client_secret_basic", scope=APP_SCOPE + " infirmary/admin",
        redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"])
    for client in (public, other, confidential):
        service.store.add_client(client)
    assert secret
    world.secrets["portal"] = secret
    resources = app.state.fhir.resources  # the server's own services: seeding needs no token
    for pid, given, family in (("pat-a", "Alice", "Able"), ("pat-b", "Bob", "Baker")):
        body = {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}]}
        outcome = await resources.update("Patient", pid, json.dumps(body).encode())
        assert outcome.status in (200, 201)
    return world


# -- a browser that fills in forms --------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    checkboxes: list[tuple[str, str, bool]] = field(default_factory=list)
    radios: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            kind, name, value = a.get("type", "text"), a.get("name", ""), a.get("value", "")
            if kind == "checkbox":
                self.forms[-1].checkboxes.append((name, value, "checked" in a))
            elif kind == "radio":
                self.forms[-1].radios.append((name, value))
            elif name:
                self.forms[-1].fields.append((name, value))
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def page_kind(html: str) -> str:
    title = re.search(r"<h1>(.*?)</h1>", html)
    return title.group(1) if title else ""


class Browser:
    """Follows redirects inside the server, stops at a page or at a redirect to the app."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def go(self, url: str, method: str = "GET", data: list[tuple[str, str]] | None = None) -> httpx.Response:
        while True:
            if method == "GET":
                response = await self.http.get(url)
            else:
                response = await self.http.post(url, content=urlencode(data or []), headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
            if response.status_code not in (302, 303):
                return response
            location = urljoin(str(response.request.url), response.headers["location"])
            if not location.startswith(ORIGIN):
                return response
            url, method, data = location, "GET", None

    async def submit(self, response: httpx.Response, *, values: dict[str, str] | None = None,
                     button: tuple[str, str] | None = None, keep_scopes: set[str] | None = None,
                     radio: str | None = None, index: int = -1) -> httpx.Response:
        form = forms(response.text)[index]
        data = [(k, v) for k, v in form.fields if not values or k not in values]
        data += list((values or {}).items())
        data += [(n, v) for n, v, checked in form.checkboxes if (v in keep_scopes if keep_scopes is not None
                                                                 else checked)]
        if radio is not None:
            data.append((form.radios[0][0], radio))
        if button is not None:
            data.append(button)
        url = urljoin(str(response.request.url), form.action)
        if form.method == "get":
            return await self.go(str(httpx.URL(url, params=data)))
        return await self.go(url, "POST", data)

    async def login(self, response: httpx.Response, username: str, password: str = PASSWORD) -> httpx.Response:
        assert page_kind(response.text) == "Sign in", response.text
        return await self.submit(response, values={"username": username, "password": password})


def oauth_client(world: World, client_id: str = "app", scope: str = APP_SCOPE, **kwargs: Any) -> AsyncOAuth2Client:
    kwargs.setdefault("token_endpoint_auth_method", "none")
    return AsyncOAuth2Client(client_id=client_id, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256",
                             transport=world.transport, **kwargs)


@dataclass
class Authorized:
    callback: str
    verifier: str
    state: str

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.callback).query).items()}


async def authorize(world: World, client: AsyncOAuth2Client, username: str, *, keep_scopes: set[str] | None = None,
                    pick: str | None = None, deny: bool = False, browser: Browser | None = None,
                    **params: str) -> Authorized:
    """Run the front channel: authorization URL → login → (picker) → consent → the redirect to the app."""
    verifier = generate_token(48)
    params.setdefault("aud", FHIR)
    url, state = client.create_authorization_url(AUTHORIZE, code_verifier=verifier, **params)
    own_browser = browser is None
    http = world.http() if own_browser else None
    browser = browser or Browser(http)  # type: ignore[arg-type]
    try:
        response = await browser.go(url)
        if page_kind(response.text) == "Sign in":
            response = await browser.login(response, username)
        if page_kind(response.text) == "Choose a patient":
            assert pick is not None, "the picker was shown but the test picks no patient"
            response = await browser.submit(response, radio=pick)
        assert page_kind(response.text) == "Allow access?", (response.status_code, response.headers, response.text)
        response = await browser.submit(response, button=("decision", "deny" if deny else "approve"),
                                        keep_scopes=keep_scopes)
        assert response.status_code in (302, 303), response.text
        return Authorized(response.headers["location"], verifier, state)
    finally:
        if http is not None:
            await http.aclose()


async def login_and_fetch(world: World, client: AsyncOAuth2Client, username: str, **kwargs: Any) -> dict[str, Any]:
    done = await authorize(world, client, username, **kwargs)
    token: dict[str, Any] = await client.fetch_token(TOKEN, authorization_response=done.callback,
                                                     code_verifier=done.verifier)
    return token


async def post_form(world: World, url: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    async with world.http() as http:
        return await http.post(url, data=data, **kwargs)


async def front_channel(world: World, username: str, params: dict[str, str],
                        decision: str = "approve") -> dict[str, str]:
    """A hand-written authorization request, as ``username``: the query of the redirect back to the app."""
    async with world.http() as http:
        browser = Browser(http)
        response = await browser.go(f"{AUTHORIZE}?{urlencode(params)}")
        if page_kind(response.text) == "Sign in":
            response = await browser.login(response, username)
        if page_kind(response.text) == "Allow access?":
            response = await browser.submit(response, button=("decision", decision))
    assert response.status_code == 302, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

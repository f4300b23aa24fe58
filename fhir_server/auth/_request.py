"""The adapter's request object for authlib, and the "user" object that travels through authlib's grants."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request

from fhir_server.auth.models import LaunchContext, User


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._data: dict[str, str] = {}
        for key, value in items:
            self._data.setdefault(key, value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in self._items:
            values[key].append(value)
        return values


@dataclass(frozen=True)
class Endpoints:
    """The public URLs of one request's server: they depend on the configured or requested base URL."""

    fhir_base: str  # also the audience of access tokens
    issuer: str
    auth_base: str

    @property
    def token_url(self) -> str:
        return f"{self.auth_base}/token"


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as authlib sees it: method, URL, headers, and the parameters (query for GET, form for POST).

    authlib's own constructor refuses ``http://`` URLs; TLS is terminated in front of this server (docs/auth.md),
    so the adapter sets the same attributes itself.
    """

    def __init__(self, method: str, uri: str, headers: Any, items: list[tuple[str, str]], endpoints: Endpoints,
                 address: str = "") -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.payload = _Payload(items)
        self.client: Any = None
        self.auth_method: str | None = None
        self.user: Any = None
        self.authorization_code: Any = None
        self.refresh_token: Any = None
        self.credential: Any = None
        self._scope: str | None = None
        self.endpoints = endpoints
        self.address = address
        self.items = items
        self.launch: LaunchContext | None = None

    @property
    def args(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class OAuthJsonRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: Any, data: Any, endpoints: Endpoints) -> None:
        super().__init__(method, uri, headers)
        self.payload = _JsonPayload(data)
        self.endpoints = endpoints


@dataclass(frozen=True)
class Grantee:
    """The resource owner of a user grant, with what was decided at consent: passed to authlib as "the user"."""

    user: User
    scope: str
    grant_id: str
    auth_time: int
    session_id: str | None = None
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = False
    launch_id: str | None = None
    fhir_base: str = ""

"""What every part of the authorization server shares: settings, store, keys, the token validator, client keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.auth.keys import KeyRing
from fhir_server.auth.models import Client
from fhir_server.auth.store import AuthStore
from fhir_server.auth.tokens import TokenValidator
from fhir_server.settings import AuthSettings

CLIENT_ASSERTION_ALGS = ("RS384", "ES384")


class ClientKeyError(Exception):
    """The client's keys cannot be had (no JWKS registered, the URL does not answer, or answers no key set)."""


@dataclass
class AuthCore:
    settings: AuthSettings
    store: AuthStore
    keys: KeyRing
    resource_types: Collection[str]
    validator: TokenValidator = field(init=False)
    _jwks_cache: dict[str, tuple[float, KeySet]] = field(default_factory=dict, init=False)
    _jwks_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.validator = TokenValidator(self.keys, self.store.is_revoked, self.resource_types)

    def client_keys(self, client: Client, kid: str | None = None) -> KeySet:
        """The public keys a client signs its assertions with: its registered JWKS, or the one at its JWKS URL
        (cached ``jwks_cache_s``; fetched again when ``kid`` is not in the cached set)."""
        if client.jwks:
            try:
                return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise ClientKeyError("the client's registered JWKS holds no usable key") from exc
        if not client.jwks_uri:
            raise ClientKeyError("the client has no JWKS and no JWKS URL")
        url = client.jwks_uri
        now = time.monotonic()
        with self._jwks_lock:
            cached = self._jwks_cache.get(url)
        if cached is not None and now - cached[0] < self.settings.jwks_cache_s and (
            kid is None or any(k.kid == kid for k in cached[1].keys)
        ):
            return cached[1]
        keyset = self._fetch_jwks(url)
        with self._jwks_lock:
            self._jwks_cache[url] = (now, keyset)
        return keyset

    def _fetch_jwks(self, url: str) -> KeySet:
        check_jwks_uri(url, allow_http=self.settings.allow_http_jwks_uri)
        try:
            response = httpx.get(url, timeout=5.0, follow_redirects=False, headers={"Accept": "application/json"})
            response.raise_for_status()
            data: Any = response.json()
            return KeySet.import_key_set(data)
        except (httpx.HTTPError, ValueError, JoseError, KeyError, TypeError) as exc:
            raise ClientKeyError(f"no key set could be read from the client's JWKS URL ({type(exc).__name__})") from exc


def check_jwks_uri(url: str, *, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and allow_http:
        return
    raise ClientKeyError("a JWKS URL must be an https:// URL")

"""``AuthService``: the authorization server assembled from settings — store, keys, authlib server, login guard.

``create_app`` builds one, mounts its routes (``fhir_server.auth.routes``), opens it in the lifespan.  The
enforcement layer calls ``authenticate`` on every FHIR request.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

from fhir_server.auth._request import Endpoints
from fhir_server.auth.core import AuthCore
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.passwords import LoginGuard
from fhir_server.auth.patients import PatientDirectory
from fhir_server.auth.server import SmartServer
from fhir_server.auth.sqlite_store import SQLiteAuthStore
from fhir_server.auth.store import AuthStore
from fhir_server.auth.tokens import AccessContext
from fhir_server.settings import Settings


def store_path(settings: Settings) -> Path:
    return settings.auth.store_path or settings.data_dir / "auth.db"


def keys_path(settings: Settings) -> Path:
    return settings.auth.keys_path or settings.data_dir / "auth-keys.json"


def store_kind(settings: Settings) -> str:
    """``sqlite`` or ``mongodb``: ``FHIR_AUTH__STORE``, by default the FHIR storage backend's."""
    kind = settings.auth.store or ("mongodb" if settings.storage.backend in ("mongodb", "mongo") else "sqlite")
    return "mongodb" if kind == "mongo" else kind


def build_store(settings: Settings) -> AuthStore:
    """The auth store the settings name (not opened yet)."""
    if store_kind(settings) == "mongodb":
        from fhir_server.auth.mongo_store import MongoAuthStore

        return MongoAuthStore(settings.storage.mongodb_url, database=settings.auth.mongodb_database)
    return SQLiteAuthStore(store_path(settings), settings.storage.sqlite_busy_timeout_ms)


def build_keys(settings: Settings, store: AuthStore) -> KeyRing:
    """The signing keys: beside a MongoDB auth store in the same database, else in the key file."""
    from fhir_server.auth.mongo_store import MongoAuthStore

    if isinstance(store, MongoAuthStore):
        from fhir_server.auth.mongo_keys import MongoKeyStore

        return KeyRing(MongoKeyStore(store), settings.auth.secret)
    return KeyRing(keys_path(settings), settings.auth.secret)


def open_store(settings: Settings) -> AuthStore:
    store = build_store(settings)
    store.open()
    return store


def auth_base_for(fhir_base: str) -> str:
    """Where the /auth endpoints are, seen from outside: beside the ``/fhir`` path of the FHIR base URL."""
    base = fhir_base.rstrip("/")
    if base.endswith("/fhir"):
        return base[: -len("/fhir")] + "/auth"
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/auth"


class AuthService:
    def __init__(self, settings: Settings, resource_types: Collection[str],
                 patients: PatientDirectory | None = None) -> None:
        self.settings = settings
        auth = settings.auth
        self.store: AuthStore = build_store(settings)
        self.keys = build_keys(settings, self.store)
        self.core = AuthCore(auth, self.store, self.keys, resource_types)
        self.server = SmartServer(self.core)
        self.guard = LoginGuard(self.store, max_failures=auth.login_max_failures, lockout_s=auth.lockout_s,
                                window_s=auth.throttle_window_s, max_failures_per_address=auth.throttle_max_failures)
        self.patients = patients
        self._purged = 0.0

    def open(self) -> None:
        """Blocking: opens the store, forgets expired state, adds demo users in demo mode.  The signing keys are
        read (or made) when first needed."""
        self.store.open()
        self.maybe_purge(0)
        if self.settings.demo:
            from fhir_server.demo.auth import ensure_demo_auth

            ensure_demo_auth(self.store)

    def maybe_purge(self, every_s: float = 3600.0) -> None:
        """Forget expired state at most once per ``every_s`` (blocking; called from the token endpoint's thread)."""
        now = time.time()
        if now - self._purged >= every_s:
            self._purged = now
            self.store.purge(now)

    def close(self) -> None:
        self.store.close()

    def endpoints(self, fhir_base: str) -> Endpoints:
        fhir_base = fhir_base.rstrip("/")
        return Endpoints(fhir_base, (self.settings.auth.issuer or fhir_base).rstrip("/"), auth_base_for(fhir_base))

    def authenticate(self, authorization: str | None, fhir_base: str) -> AccessContext:
        """The access context of a request's ``Authorization`` header, or ``InvalidToken`` (401).  Blocking only
        for a primary-key look-up of the revocation list."""
        endpoints = self.endpoints(fhir_base)
        return self.core.validator.authenticate(authorization, audience=endpoints.fhir_base,
                                                issuer=endpoints.issuer)

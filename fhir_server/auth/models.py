"""The authorization server's records: users, clients, codes, refresh tokens, launch contexts, sessions.

Plain dataclasses; ``Client``, ``AuthCode`` and ``RefreshToken`` also answer the duck-typed questions authlib's
grants ask of them (``check_redirect_uri``, ``get_scope`` …), so the grants work on them directly.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.auth import scopes as sc

UserKind = Literal["patient", "staff"]
ROLES: tuple[str, ...] = ("physician", "nurse", "lab-technician", "pharmacist", "billing-clerk", "administrator")
AUTH_METHODS: tuple[str, ...] = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
GRANT_TYPES: tuple[str, ...] = ("authorization_code", "refresh_token", "client_credentials")


def digest(secret: str) -> str:
    """How codes, refresh tokens and client secrets are kept at rest: their SHA-256 (they are 256-bit random)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    kind: UserKind
    display_name: str = ""
    roles: tuple[str, ...] = ()
    patient_id: str | None = None
    practitioner_id: str | None = None
    practitioner_role_id: str | None = None
    active: bool = True
    failed_logins: int = 0
    locked_until: float = 0.0
    created_at: float = field(default_factory=time.time)

    @property
    def fhir_user(self) -> str | None:
        """The FHIR resource that represents this user (``Patient/…``, ``Practitioner/…``)."""
        if self.kind == "patient" and self.patient_id:
            return f"Patient/{self.patient_id}"
        if self.practitioner_id:
            return f"Practitioner/{self.practitioner_id}"
        if self.practitioner_role_id:
            return f"PractitionerRole/{self.practitioner_role_id}"
        return None

    @property
    def is_admin(self) -> bool:
        return self.kind == "staff" and "administrator" in self.roles

    def public(self) -> dict[str, Any]:
        """What the admin API shows (never the password hash)."""
        return {
            "id": self.id, "username": self.username, "kind": self.kind, "display_name": self.display_name,
            "roles": list(self.roles), "patient": self.patient_id, "practitioner": self.practitioner_id,
            "practitioner_role": self.practitioner_role_id, "fhirUser": self.fhir_user, "active": self.active,
            "locked": self.locked_until > time.time(),
        }


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    auth_method: str
    scope: str  # the scopes this client may be granted (patterns such as patient/*.rs)
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code",)
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    registration: Literal["admin", "dynamic"] = "admin"
    created_at: float = field(default_factory=time.time)

    @property
    def allowed_scopes(self) -> sc.ScopeSet:
        return sc.ScopeSet.parse(self.scope)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "client_id": self.client_id, "client_name": self.name, "token_endpoint_auth_method": self.auth_method,
            "scope": self.scope, "redirect_uris": list(self.redirect_uris), "grant_types": list(self.grant_types),
            "registration": self.registration,
        }
        if self.jwks_uri:
            out["jwks_uri"] = self.jwks_uri
        if self.jwks:
            out["jwks"] = self.jwks
        return out

    # -- authlib's ClientMixin ------------------------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # SMART: the redirect_uri is always sent, and must match a registered one exactly

    def get_allowed_scope(self, scope: str | None) -> str | None:
        if not scope:
            return None
        granted = sc.narrow_set(sc.ScopeSet.parse(scope), self.allowed_scopes)
        return granted.text or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and hmac.compare_digest(self.secret_hash, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class AuthCode:
    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    grant_id: str
    auth_time: int
    session_id: str | None = None
    nonce: str | None = None
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = False
    launch_id: str | None = None

    # -- authlib's AuthorizationCodeMixin -------------------------------------------------------------------------

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    client_id: str
    user_id: str
    scope: str
    grant_id: str
    issued_at: float
    expires_at: float
    auth_time: int
    session_id: str | None = None  # online_access tokens end with this login session
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = False
    used_at: float | None = None
    revoked: bool = False

    # -- authlib's TokenMixin -------------------------------------------------------------------------------------

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked or self.used_at is not None


@dataclass(frozen=True)
class LaunchContext:
    """An EHR launch: the context the EHR set up before launching an app with ``launch=<launch_id>``."""

    launch_id: str
    expires_at: float
    patient: str | None = None
    encounter: str | None = None
    user_id: str | None = None  # only this user may use it (None: any staff user)
    client_id: str | None = None  # only this client may use it (None: any)
    need_patient_banner: bool = True
    used: bool = False


@dataclass(frozen=True)
class Session:
    """A browser login at the authorization server (the ``infirmary_session`` cookie names it)."""

    session_id: str
    user_id: str
    auth_time: int
    expires_at: float

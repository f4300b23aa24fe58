"""Client and user records built from what an administrator (admin API, command line) or an app (dynamic
registration) asked for, checked once here so that every way in applies the same rules."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.auth import scopes as sc
from fhir_server.auth.core import ClientKeyError, check_jwks_uri
from fhir_server.auth.models import AUTH_METHODS, GRANT_TYPES, ROLES, Client, User, UserKind, digest
from fhir_server.auth.passwords import hash_password

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class ClientSpecError(ValueError):
    """A client or user request that breaks a rule; ``element`` names the field."""

    def __init__(self, element: str, description: str) -> None:
        super().__init__(f"{element}: {description}")
        self.element = element
        self.description = description


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or not parts.scheme:
        raise ClientSpecError("redirect_uris", f"{uri!r} must be an absolute URI without a fragment")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    if parts.scheme not in ("http", "https") and "." in parts.scheme:
        return  # a native app's private-use scheme (RFC 8252 §7.1), e.g. org.example.app:/callback
    raise ClientSpecError("redirect_uris", f"{uri!r} must be https (http only for loopback addresses)")


def _check_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ClientSpecError("jwks", "must be a JSON Web Key Set (an object with a keys array)")
    try:
        keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise ClientSpecError("jwks", "holds no usable public key") from exc
    if any(key.key_type not in ("RSA", "EC") for key in keyset.keys):
        raise ClientSpecError("jwks", "keys must be RSA (RS384) or EC P-384 (ES384)")
    if any(key.is_private for key in keyset.keys):
        raise ClientSpecError("jwks", "register public keys only")
    return {"keys": [key.as_dict(private=False) for key in keyset.keys]}


def build_client(
    *,
    name: str,
    auth_method: str,
    scope: str,
    redirect_uris: Sequence[str] = (),
    grant_types: Sequence[str] = ("authorization_code",),
    client_id: str | None = None,
    jwks: Any = None,
    jwks_uri: str | None = None,
    secret: str | None = None,
    registration: Literal["admin", "dynamic"] = "admin",
    allow_http_jwks_uri: bool = False,
) -> tuple[Client, str | None]:
    """The client, and its secret in clear when it has one (shown once; only its hash is kept)."""
    client_id = client_id or secrets.token_urlsafe(18)
    if not _CLIENT_ID.match(client_id):
        raise ClientSpecError("client_id", "use 1-128 letters, digits and . _ ~ -")
    if not name.strip():
        raise ClientSpecError("client_name", "a client needs a name (shown on the consent page)")
    if auth_method not in AUTH_METHODS:
        raise ClientSpecError("token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}")
    grants = tuple(dict.fromkeys(grant_types))
    allowed_grants = GRANT_TYPES if registration == "admin" else ("authorization_code", "refresh_token")
    if not grants or any(g not in allowed_grants for g in grants):
        raise ClientSpecError("grant_types", f"must be some of {', '.join(allowed_grants)}")
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise ClientSpecError("grant_types", "refresh_token goes with authorization_code")
    if "client_credentials" in grants and auth_method == "none":
        raise ClientSpecError("token_endpoint_auth_method", "client_credentials needs an authenticated client")
    uris = tuple(dict.fromkeys(redirect_uris))
    if "authorization_code" in grants and not uris:
        raise ClientSpecError("redirect_uris", "an authorization_code client needs at least one redirect URI")
    for uri in uris:
        _check_redirect_uri(uri)
    parsed = sc.ScopeSet.parse(scope)
    if parsed.invalid:
        raise ClientSpecError("scope", f"not SMART scopes: {' '.join(parsed.invalid)}")
    if not parsed:
        raise ClientSpecError("scope", "name the scopes this client may be granted")
    if registration == "dynamic" and (parsed.in_context("system") or sc.ADMIN in parsed):
        raise ClientSpecError("scope", "dynamically registered clients may not have system/ or admin scopes")
    keys: dict[str, Any] | None = None
    if auth_method == "private_key_jwt":
        if (jwks is None) == (jwks_uri is None):
            raise ClientSpecError("jwks", "a private_key_jwt client registers either jwks or jwks_uri")
        if jwks is not None:
            keys = _check_jwks(jwks)
        else:
            assert jwks_uri is not None
            try:
                check_jwks_uri(jwks_uri, allow_http=allow_http_jwks_uri)
            except ClientKeyError as exc:
                raise ClientSpecError("jwks_uri", str(exc)) from exc
    elif jwks is not None or jwks_uri is not None:
        raise ClientSpecError("jwks", "keys are for private_key_jwt clients")
    if auth_method in ("client_secret_basic", "client_secret_post"):
        secret = secret or secrets.token_urlsafe(32)
    else:
        secret = None
    client = Client(
        client_id=client_id, name=name.strip(), auth_method=auth_method, scope=parsed.text, redirect_uris=uris,
        grant_types=grants, secret_hash=digest(secret) if secret else None, jwks=keys,
        jwks_uri=jwks_uri if auth_method == "private_key_jwt" else None, registration=registration,
    )
    return client, secret


def build_user(
    *,
    username: str,
    password: str,
    kind: str,
    display_name: str = "",
    roles: Sequence[str] = (),
    patient: str | None = None,
    practitioner: str | None = None,
    practitioner_role: str | None = None,
    user_id: str | None = None,
) -> User:
    """A new user with an argon2 hash of ``password`` (blocking for tens of milliseconds)."""
    if not re.match(r"^[A-Za-z0-9._@+-]{1,64}$", username):
        raise ClientSpecError("username", "use 1-64 letters, digits and . _ @ + -")
    if kind not in ("patient", "staff"):
        raise ClientSpecError("kind", "must be patient or staff")
    roles = tuple(dict.fromkeys(roles))
    for ref, element in ((patient, "patient"), (practitioner, "practitioner"),
                         (practitioner_role, "practitioner_role")):
        if ref is not None and not _FHIR_ID.match(ref):
            raise ClientSpecError(element, f"{ref!r} is not a FHIR id")
    if kind == "patient":
        if not patient:
            raise ClientSpecError("patient", "a patient user is linked to their Patient id")
        if roles or practitioner or practitioner_role:
            raise ClientSpecError("roles", "a patient user has no staff roles or practitioner links")
    else:
        if patient:
            raise ClientSpecError("patient", "a staff user is linked to a Practitioner, not a Patient")
        if not roles:
            raise ClientSpecError("roles", f"a staff user has one or more of {', '.join(ROLES)}")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ClientSpecError("roles", f"unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise ClientSpecError("password", str(exc)) from exc
    user_kind: UserKind = "patient" if kind == "patient" else "staff"
    return User(
        id=user_id or uuid.uuid4().hex, username=username, password_hash=password_hash, kind=user_kind,
        display_name=display_name or username, roles=roles, patient_id=patient, practitioner_id=practitioner,
        practitioner_role_id=practitioner_role,
    )

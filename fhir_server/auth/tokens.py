"""Access tokens: what they claim, how they are made, and the one function every protected request calls.

An access token is a JWT (RFC 9068 profile, header ``typ: at+jwt``) signed with the server's current key::

    iss        the issuer (FHIR base URL unless FHIR_AUTH__ISSUER is set)
    aud        the FHIR base URL the token is for
    sub        the user id, or the client id for Backend Services tokens
    client_id  the client it was issued to
    scope      the granted scopes, space-separated (SMART v1 and v2, query-restricted v2 scopes included)
    iat, exp   issued / expires (at most one hour apart)
    jti        the token's id (revocation by RFC 7009 lists it)
    kind       "patient" | "staff" | "system": who acts
    fhirUser   the acting user's FHIR resource, relative ("Practitioner/prac-house"), when there is one
    patient    launch context: the patient id in context (patient/… scopes are about this patient)
    encounter  launch context: the encounter id in context
    roles      staff roles (physician, nurse, lab-technician, pharmacist, billing-clerk, administrator)
    grant_id   the authorization grant (code → refresh chain) the token comes from; revoking it revokes the token

``TokenValidator.validate`` turns a token into an ``AccessContext`` or raises ``InvalidToken`` (401 with
``WWW-Authenticate: Bearer error="invalid_token"`` and an OperationOutcome).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from fhir_server.auth.keys import SIGNING_ALG, KeyRing
from fhir_server.auth.scopes import Context, ScopeSet
from fhir_server.errors import Unauthorized

ACCESS_TOKEN_TYPE = "at+jwt"
Kind = Literal["patient", "staff", "system"]
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class AccessContext:
    """Who is asking, for which client, with what scopes and launch context."""

    subject: str
    client_id: str
    scopes: ScopeSet
    kind: Kind
    token_id: str
    issued_at: int
    expires_at: int
    fhir_user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    roles: frozenset[str] = frozenset()
    grant_id: str | None = None

    @property
    def is_system(self) -> bool:
        return self.kind == "system"

    def may(self, interaction: str, resource_type: str, context: Context | None = None) -> bool:
        return self.scopes.may(interaction, resource_type, context)


class InvalidToken(Unauthorized):
    """A missing, malformed, expired, revoked or foreign access token (401)."""

    def __init__(self, diagnostics: str, *, error: str | None = "invalid_token") -> None:
        challenge = 'Bearer realm="infirmary"'
        if error:
            challenge += f', error="{error}", error_description="{diagnostics}"'
        super().__init__(diagnostics, headers={"WWW-Authenticate": challenge})


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header; ``InvalidToken`` when absent or of another scheme."""
    if not authorization:
        raise InvalidToken("this request needs an access token (Authorization: Bearer …)", error=None)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("the Authorization header is not 'Bearer <token>'", error="invalid_request")
    return token


def mint_access_token(
    keys: KeyRing,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scope: str,
    lifetime_s: int,
    kind: Kind,
    fhir_user: str | None = None,
    patient: str | None = None,
    encounter: str | None = None,
    roles: Sequence[str] = (),
    grant_id: str | None = None,
    now: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """A signed access token and its claims."""
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": subject, "client_id": client_id, "scope": scope,
        "iat": now, "exp": now + lifetime_s, "jti": secrets.token_urlsafe(16), "kind": kind,
    }
    optional = {"fhirUser": fhir_user, "patient": patient, "encounter": encounter, "grant_id": grant_id}
    claims.update({k: v for k, v in optional.items() if v})
    if roles:
        claims["roles"] = list(roles)
    header = {"alg": SIGNING_ALG, "kid": keys.kid, "typ": ACCESS_TOKEN_TYPE}
    token = jwt.encode(header, claims, keys.signing_key, algorithms=[SIGNING_ALG], default_type=None)
    return token, claims


class TokenValidator:
    """Validates access tokens: signature (current or recently rotated key), type, issuer, audience, expiry, and
    the revocation list.  Decoded tokens are cached (first in, first out); expiry and revocation are checked on every call."""

    def __init__(
        self,
        keys: KeyRing,
        is_revoked: Callable[[Sequence[str]], bool],
        resource_types: Collection[str] | None = None,
        leeway_s: int = 0,
    ) -> None:
        self.keys = keys
        self.is_revoked = is_revoked
        self.resource_types = resource_types
        self.leeway_s = leeway_s
        self._cache: dict[str, tuple[str, str, AccessContext, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None, *, audience: str, issuer: str) -> AccessContext:
        return self.validate(bearer_token(authorization), audience=audience, issuer=issuer)

    def validate(self, token: str, *, audience: str, issuer: str, now: float | None = None) -> AccessContext:
        now = time.time() if now is None else now
        cached = self._cache.get(token)  # a dict read is atomic: no lock on the hot path
        if cached is not None and cached[0] == audience and cached[1] == issuer:
            context, ids = cached[2], cached[3]
        else:
            context = self._decode(token, audience=audience, issuer=issuer, now=now)
            ids = _revocable_ids(context)
            with self._lock:
                self._cache[token] = (audience, issuer, context, ids)
                while len(self._cache) > _CACHE_SIZE:
                    del self._cache[next(iter(self._cache))]  # the oldest decoded token
        if context.expires_at + self.leeway_s <= now:
            raise InvalidToken("the access token has expired")
        if self.is_revoked(ids):
            raise InvalidToken("the access token was revoked")
        return context

    def _decode(self, token: str, *, audience: str, issuer: str, now: float) -> AccessContext:
        try:
            header = extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise InvalidToken("the access token is not a JWT") from exc
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYPE, f"application/{ACCESS_TOKEN_TYPE}"):
            raise InvalidToken("the token is not an access token (typ at+jwt)")
        kid = header.get("kid")
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(kid if isinstance(kid, str) else None),
                                 algorithms=[SIGNING_ALG])
        except (JoseError, ValueError) as exc:
            raise InvalidToken("the access token's signature does not verify") from exc
        registry = jwt.JWTClaimsRegistry(
            now=int(now), leeway=self.leeway_s,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
            jti={"essential": True}, client_id={"essential": True},
        )
        claims = decoded.claims
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from exc
        kind = claims.get("kind")
        if kind not in ("patient", "staff", "system"):
            raise InvalidToken("the access token has no valid 'kind' claim")
        roles = claims.get("roles") or []
        return AccessContext(
            subject=str(claims["sub"]),
            client_id=str(claims["client_id"]),
            scopes=ScopeSet.parse(str(claims.get("scope") or ""), self.resource_types),
            kind=kind,
            token_id=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            fhir_user=_opt(claims.get("fhirUser")),
            patient=_opt(claims.get("patient")),
            encounter=_opt(claims.get("encounter")),
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            grant_id=_opt(claims.get("grant_id")),
        )


def _revocable_ids(context: AccessContext) -> tuple[str, ...]:
    """What revoking would name to end this token: itself, its client, its user, its grant."""
    ids = [context.token_id, f"client:{context.client_id}"]
    if context.kind != "system":
        ids.append(f"user:{context.subject}")
    if context.grant_id:
        ids.append(context.grant_id)
    return tuple(ids)


def _opt(value: object) -> str | None:
    return str(value) if value else None


def _claim_problem(exc: JoseError) -> str:
    name = getattr(exc, "claim", None)
    error = getattr(exc, "error", "")
    if error == "expired_token":
        return "the access token has expired"
    if name == "aud":
        return "the access token is for another server (aud)"
    if name == "iss":
        return "the access token was issued by another server (iss)"
    if name:
        return f"the access token's '{name}' claim is missing or invalid"
    return "the access token's claims are not valid"

"""authlib's grants, completed for SMART: authorization code (PKCE S256 only, ``aud``, launch), refresh tokens
(rotated, replay revokes the grant), client credentials (Backend Services), ``openid fhirUser`` id tokens and
``private_key_jwt`` client authentication (RS384/ES384, ``jti`` replay protection)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from fhir_server.auth import scopes as sc
from fhir_server.auth._request import Grantee, OAuthRequest
from fhir_server.auth.core import CLIENT_ASSERTION_ALGS, AuthCore, ClientKeyError
from fhir_server.auth.keys import SIGNING_ALG
from fhir_server.auth.models import AuthCode, Client, RefreshToken, digest

if TYPE_CHECKING:
    from fhir_server.auth.server import SmartServer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
USER_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
SYSTEM_AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post"]


def same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class _Issuing:
    """Grants issue tokens through ``SmartServer.issue``, which needs the request (its URLs, client, grantee)."""

    request: OAuthRequest
    server: SmartServer
    GRANT_TYPE: str

    def generate_token(self, user: Grantee | None = None, scope: str | None = None, grant_type: str | None = None,
                       expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        return self.server.issue(self.request, grant_type or self.GRANT_TYPE, user, scope or "",
                                 include_refresh_token)


class CodeGrant(_Issuing, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS

    def save_authorization_code(self, code: str, request: OAuthRequest) -> None:
        grantee: Grantee = request.user
        core = self.server.core
        data = request.payload.data
        if grantee.launch_id and not core.store.use_launch(grantee.launch_id):
            raise InvalidRequestError("the launch context was used already", redirect_uri=self.redirect_uri)
        self.server.core.store.add_code(AuthCode(
            code_hash=digest(code), client_id=request.client.client_id, redirect_uri=data["redirect_uri"],
            scope=grantee.scope, user_id=grantee.user.id, code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=time.time() + core.settings.code_lifetime_s, grant_id=grantee.grant_id,
            auth_time=grantee.auth_time, session_id=grantee.session_id, nonce=data.get("nonce"),
            patient=grantee.patient, encounter=grantee.encounter,
            need_patient_banner=grantee.need_patient_banner, launch_id=grantee.launch_id,
        ))

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        return self.server.core.store.take_code(digest(code), client.client_id)

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        pass  # take_code marked it used: a second use is refused and revokes the grant

    def authenticate_user(self, authorization_code: AuthCode) -> Grantee | None:
        user = self.server.core.store.get_user(authorization_code.user_id)
        if user is None or not user.active:
            return None
        return Grantee(user, authorization_code.scope, authorization_code.grant_id, authorization_code.auth_time,
                       authorization_code.session_id, authorization_code.patient, authorization_code.encounter,
                       authorization_code.need_patient_banner, authorization_code.launch_id,
                       self.request.endpoints.fhir_base)


class RefreshGrant(_Issuing, grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        store = self.server.core.store
        record = store.get_refresh_token(digest(refresh_token))
        if record is None:
            return None
        if record.used_at is not None:
            # a rotated token came back: someone holds a copy; end the whole grant (OAuth 2 security BCP 4.14)
            store.revoke_grant(record.grant_id, time.time() + 86_400)
            return None
        if record.revoked or record.is_expired():
            return None
        if record.session_id is not None:
            session = store.get_session(record.session_id)
            if session is None or session.expires_at <= time.time():
                return None
        return record

    def authenticate_user(self, refresh_token: RefreshToken) -> Grantee | None:
        user = self.server.core.store.get_user(refresh_token.user_id)
        if user is None or not user.active:
            return None
        return Grantee(user, refresh_token.scope, refresh_token.grant_id, refresh_token.auth_time,
                       refresh_token.session_id, refresh_token.patient, refresh_token.encounter,
                       refresh_token.need_patient_banner, None, self.request.endpoints.fhir_base)

    def issue_token(self, user: Grantee, refresh_token: RefreshToken) -> dict[str, Any]:
        store = self.server.core.store
        if not store.use_refresh_token(refresh_token.token_hash):
            store.revoke_grant(refresh_token.grant_id, time.time() + 86_400)
            raise InvalidGrantError("the refresh token was already used")
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(user=user, scope=scope, include_refresh_token=True)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        pass  # issue_token marked it used


class SystemGrant(_Issuing, grants.ClientCredentialsGrant):  # type: ignore[misc]
    """SMART Backend Services: ``client_credentials`` with ``system/…`` scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS = SYSTEM_AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: Client = self.request.client
        requested = sc.ScopeSet.parse(self.request.payload.scope or "", self.server.core.resource_types)
        if not requested or requested.invalid:
            raise InvalidScopeError("ask for system/ scopes (SMART v1 or v2 syntax)")
        system_only = sc.without(requested, contexts=("patient", "user"),
                                 names=sc.SPECIAL_SCOPES - {sc.ADMIN})
        granted = sc.narrow_set(system_only, client.allowed_scopes)
        if not granted:
            raise InvalidScopeError("none of the requested scopes is allowed for this client")
        self.request.scope = granted.text

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PkceS256(CodeChallenge):  # type: ignore[misc]
    """PKCE is required of every client, with ``S256`` only (SMART App Launch 2.x)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not supported)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: CodeGrant, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required)")
        super().validate_code_verifier(grant, result)


class SmartLaunch:
    """SMART checks of an authorization request: ``aud`` is this FHIR server, scopes are known and allowed, and an
    EHR ``launch`` names a live launch context made for this client."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    def __call__(self, grant: CodeGrant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: CodeGrant, redirect_uri: str) -> None:
        request: OAuthRequest = grant.request
        data = request.payload.data
        aud = data.get("aud")
        if not aud:
            raise InvalidRequestError("Missing 'aud': send the FHIR base URL of this server")
        if not same_url(aud, request.endpoints.fhir_base):
            raise InvalidRequestError("'aud' is not this FHIR server's base URL")
        scopes = sc.ScopeSet.parse(request.scope or "", self.core.resource_types)
        scopes = sc.without(scopes, contexts=("system",))
        launch_id = data.get("launch")
        if launch_id:
            if sc.LAUNCH not in scopes:
                raise InvalidScopeError("an EHR launch (launch parameter) needs the 'launch' scope")
            launch = self.core.store.get_launch(launch_id)
            client_id = request.client.client_id
            if (launch is None or launch.used or launch.expires_at <= time.time()
                    or (launch.client_id is not None and launch.client_id != client_id)):
                raise InvalidRequestError("the 'launch' parameter names no live launch context for this client")
            request.launch = launch
        else:
            scopes = sc.without(scopes, names={sc.LAUNCH})  # an EHR-launch scope means nothing in a standalone launch
        if not scopes:
            raise InvalidScopeError("none of the requested scopes can be granted to this client")
        request.scope = scopes.text


class IdToken(OpenIDCode):  # type: ignore[misc]
    """``openid fhirUser`` id tokens, signed with the server's key."""

    def __init__(self, core: AuthCore) -> None:
        super().__init__(require_nonce=False)
        self.core = core

    def exists_nonce(self, nonce: str, request: OAuthRequest) -> bool:
        return self.core.store.nonce_used(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.core.keys.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return SIGNING_ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": SIGNING_ALG, "kid": self.core.keys.kid}

    def get_compatible_claims(self, request: OAuthRequest) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": request.endpoints.issuer, "aud": request.client.client_id, "iat": now,
                "exp": now + self.core.settings.access_token_lifetime_s}

    def generate_user_info(self, user: Grantee, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.user.id}
        names = scope.split()
        if sc.FHIR_USER in names and user.user.fhir_user:
            info["fhirUser"] = f"{user.fhir_base}/{user.user.fhir_user}"
        if sc.PROFILE in names and user.user.display_name:
            info["name"] = user.user.display_name
        return info


class PrivateKeyJwt:
    """``private_key_jwt`` client authentication (RFC 7523 §2.2, SMART Backend Services): a JWT signed with RS384
    or ES384 by a key of the client's JWKS, ``iss`` = ``sub`` = client id, ``aud`` = the token endpoint, ``exp`` at
    most five minutes ahead, and a ``jti`` never seen before from this client."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    def __call__(self, query_client: Any, request: OAuthRequest) -> Client | None:
        data = request.form
        if data.get("client_assertion_type") != ASSERTION_TYPE or not data.get("client_assertion"):
            return None
        assertion = data["client_assertion"]
        try:
            compact = extract_compact(assertion.encode())
            header = compact.headers()
            claims = json.loads(compact.payload)
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="the client assertion is not a JWT") from exc
        if not isinstance(claims, dict):
            raise InvalidClientError(description="the client assertion is not a JWT")
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or claims.get("sub") != client_id:
            raise InvalidClientError(description="the client assertion's iss and sub must both be the client id")
        if data.get("client_id") and data["client_id"] != client_id:
            raise InvalidClientError(description="client_id and the client assertion disagree")
        client: Client | None = query_client(client_id)
        if client is None or client.auth_method != "private_key_jwt":
            raise InvalidClientError(description="no client of this id authenticates with private_key_jwt")
        alg = header.get("alg")
        if alg not in CLIENT_ASSERTION_ALGS:
            raise InvalidClientError(description="the client assertion must be signed with RS384 or ES384")
        jku = header.get("jku")
        if jku is not None and jku != client.jwks_uri:
            raise InvalidClientError(description="the client assertion's jku is not the client's registered JWKS URL")
        kid = header.get("kid")
        try:
            keys = self.core.client_keys(client, kid if isinstance(kid, str) else None)
            token = jwt.decode(assertion, keys, algorithms=[alg])
        except ClientKeyError as exc:
            raise InvalidClientError(description=str(exc)) from exc
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="the client assertion's signature does not verify") from exc
        self._check_claims(token.claims, request)
        expires = float(token.claims["exp"])
        if not self.core.store.use_jti(client_id, str(token.claims["jti"]), expires):
            raise InvalidClientError(description="this client assertion (jti) was used before")
        return client

    @staticmethod
    def _audiences(request: OAuthRequest) -> list[str]:
        """The token endpoint (SMART); for introspection and revocation also the endpoint called."""
        auth = request.endpoints.auth_base
        return [request.endpoints.token_url, f"{auth}/introspect", f"{auth}/revoke"]

    def _check_claims(self, claims: dict[str, Any], request: OAuthRequest) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True}, sub={"essential": True}, exp={"essential": True}, jti={"essential": True},
            aud={"essential": True, "values": self._audiences(request)},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            name = getattr(exc, "claim", "")
            raise InvalidClientError(description=f"the client assertion's {name or 'claims'} is not valid") from exc
        if float(claims["exp"]) > time.time() + self.core.settings.client_assertion_max_lifetime_s + 30:
            raise InvalidClientError(description="the client assertion's exp is too far ahead (five minutes at most)")

"""Token introspection (RFC 7662), revocation (RFC 7009) and dynamic client registration (RFC 7591)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, UnsupportedTokenTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from fhir_server.auth import clients
from fhir_server.auth._request import OAuthJsonRequest, OAuthRequest
from fhir_server.auth.models import Client, RefreshToken, digest
from fhir_server.auth.tokens import AccessContext, InvalidToken

if TYPE_CHECKING:
    from fhir_server.auth.server import SmartServer

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


@dataclass(frozen=True)
class _Access:
    """A valid access token, as the introspection and revocation endpoints see it."""

    context: AccessContext
    issuer: str
    audience: str

    def check_client(self, client: Client) -> bool:
        return self.context.client_id == client.client_id

    def is_expired(self) -> bool:
        return self.context.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return False  # the validator refused revoked tokens already


def oauth_text(text: str) -> str:
    """``text`` cut to the characters an OAuth ``error_description`` may hold (RFC 6749 §5.2)."""
    return "".join(ch if (0x20 <= ord(ch) <= 0x7E and ch not in '"\\') else "?" for ch in text)


def _find_token(server: SmartServer, request: OAuthRequest) -> _Access | RefreshToken | None:
    form = request.form
    if "token" not in form:
        raise InvalidRequestError("Missing 'token'")
    hint = form.get("token_type_hint")
    if hint and hint not in ("access_token", "refresh_token"):
        raise UnsupportedTokenTypeError()
    value = form["token"]
    if hint != "refresh_token" and value.count(".") == 2:
        endpoints = request.endpoints
        try:
            context = server.core.validator.validate(value, audience=endpoints.fhir_base, issuer=endpoints.issuer)
        except InvalidToken:
            return None
        return _Access(context, endpoints.issuer, endpoints.fhir_base)
    record = server.core.store.get_refresh_token(digest(value))
    if record is None or record.is_revoked() or record.is_expired():
        return None
    return record


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """Any authenticated client may introspect access tokens; a refresh token only by the client it was issued to.
    Public clients (``none``) may introspect only their own tokens."""

    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: SmartServer

    def authenticate_token(self, request: OAuthRequest, client: Client) -> _Access | RefreshToken | None:
        token = _find_token(self.server, request)
        if token is None:
            return None
        if isinstance(token, RefreshToken) or client.auth_method == "none":
            return token if token.check_client(client) else None
        return token

    def check_permission(self, token: Any, client: Client, request: OAuthRequest) -> bool:
        return True

    def introspect_token(self, token: _Access | RefreshToken) -> dict[str, Any]:
        if isinstance(token, RefreshToken):
            return {"active": True, "token_type": "refresh_token", "client_id": token.client_id,
                    "scope": token.scope, "sub": token.user_id, "exp": int(token.expires_at),
                    "iat": int(token.issued_at)}
        ctx = token.context
        out: dict[str, Any] = {
            "active": True, "token_type": "Bearer", "client_id": ctx.client_id, "scope": ctx.scopes.text,
            "sub": ctx.subject, "exp": ctx.expires_at, "iat": ctx.issued_at, "iss": token.issuer,
            "aud": token.audience, "jti": ctx.token_id,
        }
        extra = {"fhirUser": ctx.fhir_user, "patient": ctx.patient, "encounter": ctx.encounter}
        out.update({k: v for k, v in extra.items() if v})
        return out


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """Revoking an access token lists its ``jti``; revoking a refresh token ends its whole grant (the refresh
    chain and the access tokens it issued).  Unknown tokens are answered 200, as RFC 7009 asks."""

    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: SmartServer

    def authenticate_token(self, request: OAuthRequest, client: Client) -> _Access | RefreshToken | None:
        token = _find_token(self.server, request)
        if token is not None and not token.check_client(client):
            raise InvalidGrantError("the token was not issued to this client")
        return token

    def revoke_token(self, token: _Access | RefreshToken, request: OAuthRequest) -> None:
        store = self.server.core.store
        if isinstance(token, RefreshToken):
            store.revoke_refresh_token(token.token_hash)
            store.revoke_grant(token.grant_id, time.time() + self.server.core.settings.access_token_lifetime_s)
        else:
            store.revoke_ids([token.context.token_id], float(token.context.expires_at))


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """Open dynamic registration (when ``FHIR_AUTH__DYNAMIC_REGISTRATION`` is on) of apps that act for users:
    ``authorization_code`` (and ``refresh_token``) only, patient/ and user/ scopes only."""

    server: SmartServer

    def authenticate_token(self, request: OAuthJsonRequest) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return {
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post",
                                                      "private_key_jwt"],
        }

    def generate_client_info(self, request: OAuthJsonRequest) -> dict[str, Any]:
        method = (request.payload.data or {}).get("token_endpoint_auth_method", "client_secret_basic")
        info: dict[str, Any] = {"client_id": secrets.token_urlsafe(18), "client_id_issued_at": int(time.time())}
        if method in ("client_secret_basic", "client_secret_post"):
            info["client_secret"] = secrets.token_urlsafe(32)
            info["client_secret_expires_at"] = 0
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any],
                    request: OAuthJsonRequest) -> Client:
        try:
            client, _ = clients.build_client(
                client_id=client_info["client_id"],
                name=str(client_metadata.get("client_name") or client_info["client_id"]),
                auth_method=str(client_metadata.get("token_endpoint_auth_method", "client_secret_basic")),
                scope=str(client_metadata.get("scope") or ""),
                redirect_uris=list(client_metadata.get("redirect_uris") or []),
                grant_types=list(client_metadata.get("grant_types") or ["authorization_code"]),
                jwks=client_metadata.get("jwks"),
                jwks_uri=client_metadata.get("jwks_uri"),
                secret=client_info.get("client_secret"),
                registration="dynamic",
                allow_http_jwks_uri=self.server.core.settings.allow_http_jwks_uri,
            )
        except clients.ClientSpecError as exc:
            raise InvalidClientMetadataError(oauth_text(f"{exc.element}: {exc.description}")) from exc
        self.server.core.store.add_client(client)
        return client

"""authlib's ``AuthorizationServer`` with the thin adapter this server needs: requests come in as ``OAuthRequest``,
responses go out as ``(status, body, headers)`` for the routes to send, tokens are made by ``issue``."""

from __future__ import annotations

import secrets
import time
from typing import Any

from authlib.oauth2 import AuthorizationServer

from fhir_server.auth import scopes as sc
from fhir_server.auth._request import Grantee, OAuthJsonRequest, OAuthRequest
from fhir_server.auth.core import AuthCore
from fhir_server.auth.endpoints import Introspection, Registration, Revocation
from fhir_server.auth.grants import (
    CodeGrant,
    IdToken,
    PkceS256,
    PrivateKeyJwt,
    RefreshGrant,
    SmartLaunch,
    SystemGrant,
)
from fhir_server.auth.models import Client, RefreshToken, digest
from fhir_server.auth.tokens import mint_access_token

Reply = tuple[int, Any, list[tuple[str, str]]]


class SmartServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, core: AuthCore) -> None:
        super().__init__(scopes_supported=None)
        self.core = core
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(core))
        self.register_grant(CodeGrant, [PkceS256(required=True), SmartLaunch(core), IdToken(core)])
        self.register_grant(RefreshGrant)
        self.register_grant(SystemGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        if core.settings.dynamic_registration:
            self.register_endpoint(Registration(self))

    # -- the adapter ----------------------------------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.core.store.get_client(client_id)

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def create_json_request(self, request: OAuthJsonRequest) -> OAuthJsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Reply:
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def validate_requested_scope(self, scope: str | None) -> None:
        pass  # scopes are narrowed to what the client may have rather than refused (SmartLaunch, SystemGrant)

    # -- tokens ---------------------------------------------------------------------------------------------------

    def issue(self, request: OAuthRequest, grant_type: str, grantee: Grantee | None, scope: str,
              include_refresh_token: bool) -> dict[str, Any]:
        settings = self.core.settings
        endpoints = request.endpoints
        client: Client = request.client
        if grantee is None:
            lifetime = settings.system_access_token_lifetime_s
            token, _ = mint_access_token(
                self.core.keys, issuer=endpoints.issuer, audience=endpoints.fhir_base, subject=client.client_id,
                client_id=client.client_id, scope=scope, lifetime_s=lifetime, kind="system",
            )
            return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}
        user = grantee.user
        lifetime = settings.access_token_lifetime_s
        token, _ = mint_access_token(
            self.core.keys, issuer=endpoints.issuer, audience=endpoints.fhir_base, subject=user.id,
            client_id=client.client_id, scope=scope, lifetime_s=lifetime, kind=user.kind,
            fhir_user=user.fhir_user, patient=grantee.patient, encounter=grantee.encounter, roles=user.roles,
            grant_id=grantee.grant_id,
        )
        out: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                               "scope": scope}
        if grantee.patient:
            out["patient"] = grantee.patient
        if grantee.encounter:
            out["encounter"] = grantee.encounter
        if grantee.patient or grantee.encounter:
            out["need_patient_banner"] = grantee.need_patient_banner
        names = scope.split()
        wants_refresh = sc.OFFLINE_ACCESS in names or sc.ONLINE_ACCESS in names
        if include_refresh_token and wants_refresh and client.check_grant_type("refresh_token"):
            out["refresh_token"] = secrets.token_urlsafe(32)
        return out

    def save_token(self, token: dict[str, Any], request: OAuthRequest) -> None:
        refresh = token.get("refresh_token")
        grantee = request.user
        if not refresh or not isinstance(grantee, Grantee):
            return
        now = time.time()
        settings = self.core.settings
        offline = sc.OFFLINE_ACCESS in str(token.get("scope", "")).split()
        session_id = None if offline else grantee.session_id
        if offline:
            expires = now + settings.offline_refresh_lifetime_s
        else:
            session = self.core.store.get_session(grantee.session_id) if grantee.session_id else None
            expires = session.expires_at if session else now + settings.session_lifetime_s
        self.core.store.add_refresh_token(RefreshToken(
            token_hash=digest(refresh), client_id=request.client.client_id, user_id=grantee.user.id,
            scope=str(token["scope"]), grant_id=grantee.grant_id, issued_at=now, expires_at=expires,
            auth_time=grantee.auth_time, session_id=session_id, patient=grantee.patient,
            encounter=grantee.encounter, need_patient_banner=grantee.need_patient_banner,
        ))

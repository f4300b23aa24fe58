"""The administration API of the authorization server (clients, users, keys) and the EHR launch API.

Callers present an access token of this server.  Administration needs the ``infirmary/admin`` scope, granted only
to users with the administrator role and to system clients registered with it.  Creating an EHR launch context
needs a staff user's token (the launch is then bound to that user) or an administration token.

The functions are blocking (store, argon2): the routes call them in a worker thread.  Errors are ``FhirError`` s
that name the offending element, answered as OperationOutcomes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from fhir_server.auth import clients
from fhir_server.auth import scopes as sc
from fhir_server.auth.core import AuthCore
from fhir_server.auth.models import LaunchContext
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import Conflict, Forbidden, InvalidRequest, NotFound


def is_admin(ctx: AccessContext) -> bool:
    return sc.ADMIN in ctx.scopes and (ctx.is_system or (ctx.kind == "staff" and "administrator" in ctx.roles))


def require_admin(ctx: AccessContext) -> None:
    if not is_admin(ctx):
        raise Forbidden("this needs an administrator's token with the infirmary/admin scope")


def _str(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"'{name}' is required", expression=name)
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string", expression=name)
    return value


def _strings(body: dict[str, Any], name: str, default: list[str]) -> list[str]:
    value = body.get(name, default)
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"'{name}' must be a list of strings", expression=name)
    return value


def add_client(core: AuthCore, body: dict[str, Any]) -> dict[str, Any]:
    try:
        client, secret = clients.build_client(
            client_id=_str(body, "client_id"),
            name=_str(body, "client_name", required=True) or "",
            auth_method=_str(body, "token_endpoint_auth_method") or "none",
            scope=_str(body, "scope", required=True) or "",
            redirect_uris=_strings(body, "redirect_uris", []),
            grant_types=_strings(body, "grant_types", ["authorization_code"]),
            jwks=body.get("jwks"),
            jwks_uri=_str(body, "jwks_uri"),
            allow_http_jwks_uri=core.settings.allow_http_jwks_uri,
        )
    except clients.ClientSpecError as exc:
        raise InvalidRequest(exc.description, expression=exc.element) from exc
    try:
        core.store.add_client(client)
    except ValueError as exc:
        raise Conflict(str(exc), expression="client_id") from exc
    out = client.public()
    if secret:
        out["client_secret"] = secret
    return out


def get_client(core: AuthCore, client_id: str) -> dict[str, Any]:
    client = core.store.get_client(client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client.public()


def list_clients(core: AuthCore) -> list[dict[str, Any]]:
    return [c.public() for c in core.store.list_clients()]


def remove_client(core: AuthCore, client_id: str) -> None:
    if not core.store.remove_client(client_id):
        raise NotFound(f"no client {client_id!r}")


def add_user(core: AuthCore, body: dict[str, Any]) -> dict[str, Any]:
    try:
        user = clients.build_user(
            username=_str(body, "username", required=True) or "",
            password=_str(body, "password", required=True) or "",
            kind=_str(body, "kind", required=True) or "",
            display_name=_str(body, "display_name") or "",
            roles=_strings(body, "roles", []),
            patient=_str(body, "patient"),
            practitioner=_str(body, "practitioner"),
            practitioner_role=_str(body, "practitioner_role"),
        )
    except clients.ClientSpecError as exc:
        raise InvalidRequest(exc.description, expression=exc.element) from exc
    try:
        core.store.add_user(user)
    except ValueError as exc:
        raise Conflict(f"the username {user.username!r} is taken", expression="username") from exc
    return user.public()


def get_user(core: AuthCore, user_id: str) -> dict[str, Any]:
    user = core.store.get_user(user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    return user.public()


def list_users(core: AuthCore) -> list[dict[str, Any]]:
    return [u.public() for u in core.store.list_users()]


def remove_user(core: AuthCore, user_id: str) -> None:
    if not core.store.remove_user(user_id):
        raise NotFound(f"no user {user_id!r}")


def unlock_user(core: AuthCore, user_id: str) -> dict[str, Any]:
    if core.store.get_user(user_id) is None:
        raise NotFound(f"no user {user_id!r}")
    core.store.set_login_state(user_id, 0, 0.0)
    return get_user(core, user_id)


def rotate_keys(core: AuthCore) -> dict[str, Any]:
    retain = 2 * max(core.settings.access_token_lifetime_s, core.settings.system_access_token_lifetime_s)
    return {"kid": core.keys.rotate(retain), "jwks": core.keys.public_jwks()}


def create_launch(core: AuthCore, ctx: AccessContext, body: dict[str, Any]) -> dict[str, Any]:
    """An EHR launch context; the EHR then opens the app with ``launch=<launch>&iss=<FHIR base>``."""
    admin = is_admin(ctx)
    if ctx.kind != "staff" and not admin:
        raise Forbidden("an EHR launch is made with a staff user's token (or an administrator's)")
    patient = _str(body, "patient")
    encounter = _str(body, "encounter")
    client_id = _str(body, "client_id")
    if client_id is not None and core.store.get_client(client_id) is None:
        raise InvalidRequest(f"no client {client_id!r}", expression="client_id")
    banner = body.get("need_patient_banner", True)
    if not isinstance(banner, bool):
        raise InvalidRequest("'need_patient_banner' must be true or false", expression="need_patient_banner")
    user_id: str | None = ctx.subject if ctx.kind == "staff" else None
    named = _str(body, "user")
    if named is not None:
        if not admin:
            raise Forbidden("only an administrator binds a launch to another user", expression="user")
        user = core.store.get_user(named) or core.store.get_user_by_username(named)
        if user is None:
            raise InvalidRequest(f"no user {named!r}", expression="user")
        user_id = user.id
    launch = LaunchContext(
        launch_id=secrets.token_urlsafe(24), expires_at=time.time() + core.settings.launch_lifetime_s,
        patient=patient, encounter=encounter, user_id=user_id, client_id=client_id, need_patient_banner=banner,
    )
    core.store.add_launch(launch)
    out: dict[str, Any] = {"launch": launch.launch_id, "expires_in": core.settings.launch_lifetime_s}
    out.update({k: v for k, v in (("patient", patient), ("encounter", encounter), ("client_id", client_id)) if v})
    return out

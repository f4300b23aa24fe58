"""Break-glass: a time-limited emergency grant that widens a clinician's reach to every patient's clinical data.

``POST /auth/break-glass`` with a clinician's access token and ``{"reason": "…", "minutes": 30}`` marks the user
(every token of theirs, at once) for that long — at most ``FHIR_AUTH__BREAK_GLASS_MAX_MINUTES``.  A physician may
declare it for themselves; an administrator may grant it to a physician or nurse (``"user": "<user id>"``).
``GET`` shows the caller's state, ``DELETE`` ends it early (the caller's own, or with ``?user=`` an
administrator ends another's).  The grant and its end are AuditEvents (purpose ``BTG``), and so is every request
the user makes while it lasts (``fhir_server.auth.audit``).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth.audit import break_glass_event
from fhir_server.auth.policy import BREAK_GLASS_ROLES, may_break_glass
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import Forbidden, InvalidRequest, NotFound
from fhir_server.storage._meta import format_instant


def _is_admin(caller: AccessContext) -> bool:
    return caller.kind == "staff" and "administrator" in caller.roles


def target_user(service: AuthService, caller: AccessContext, user_id: str | None) -> str:
    """Whose break-glass the caller is changing (403 when they may not)."""
    if user_id is None or user_id == caller.subject:
        if may_break_glass(caller):
            return caller.subject
        raise Forbidden("only physicians may declare break-glass for themselves; an administrator can grant it")
    if not _is_admin(caller):
        raise Forbidden("only an administrator may grant break-glass to another user", expression="user")
    user = service.store.get_user(user_id)
    if user is None or not user.active:
        raise NotFound(f"no user {user_id!r}", expression="user")
    if user.kind != "staff" or not set(user.roles) & BREAK_GLASS_ROLES:
        raise InvalidRequest("break-glass is for physicians and nurses", expression="user")
    return user.id


def parse_grant(body: dict[str, Any], default_minutes: int, max_minutes: int) -> tuple[str, int, str | None]:
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("'reason' is required: say why emergency access is needed", expression="reason")
    minutes = body.get("minutes", default_minutes)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= max_minutes:
        raise InvalidRequest(f"'minutes' must be a whole number from 1 to {max_minutes}", expression="minutes")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a user id", expression="user")
    return reason.strip()[:500], minutes, user


def _state(until: float) -> dict[str, Any]:
    now = time.time()
    if until <= now:
        return {"active": False}
    return {"active": True, "until": format_instant(until), "expires_in": int(until - now)}


async def break_glass(request: Request, caller: AccessContext, body: dict[str, Any] | None) -> Response:
    """The ``/auth/break-glass`` endpoint (the caller's token is already validated)."""
    service: AuthService = request.app.state.auth
    settings = service.settings.auth
    address = request.client.host if request.client else None
    security = getattr(request.app.state, "security", None)
    if request.method == "GET":
        until = await run_in_threadpool(service.store.break_glass_until, caller.subject)
        return JSONResponse(_state(until), headers={"Cache-Control": "no-store"})
    if request.method == "DELETE":
        user_id = target_user(service, caller, request.query_params.get("user"))
        ended = await run_in_threadpool(service.store.end_break_glass, user_id)
        if ended and security is not None:
            await security.audit_writer.submit([break_glass_event(caller, user_id, 0, "", address, ended=True)])
        return Response(status_code=204)
    reason, minutes, user = parse_grant(body or {}, settings.break_glass_minutes, settings.break_glass_max_minutes)
    user_id = target_user(service, caller, user)
    now = time.time()
    until = now + minutes * 60
    await run_in_threadpool(service.store.grant_break_glass, user_id, until, reason, caller.subject, now)
    if security is not None:
        await security.audit_writer.submit([break_glass_event(caller, user_id, minutes, reason, address)])
    return JSONResponse({"user": user_id, **_state(until)}, status_code=201, headers={"Cache-Control": "no-store"})

"""HTTP routes of the authorization server.  Adapters only: read the request, call the flow, authlib or the admin
functions (blocking ones in a worker thread), write the reply.

OAuth endpoints answer OAuth errors (RFC 6749 §5.2 JSON, or a redirect to the client); pages answer HTML; the
administration and launch APIs answer JSON, and OperationOutcomes on error.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from fhir_server.auth import admin, flow, pages, web
from fhir_server.auth._request import OAuthJsonRequest, OAuthRequest
from fhir_server.auth.models import Session, User
from fhir_server.auth.server import Reply
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import InvalidRequest, NotFound

#: form fields of this server's own pages, never passed on to authlib as OAuth parameters
_OWN_FIELDS = frozenset({"csrf", "decision", "grant_scope", "infirmary_patient", "patient_query"})
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_AUTHORIZE_PATH = "/auth/authorize"


def _svc(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


def _fhir_base(request: Request) -> str:
    base: str = request.app.state.fhir.base_url(request)
    return base


async def _items(request: Request) -> list[tuple[str, str]]:
    if request.method == "GET":
        return list(request.query_params.multi_items())
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


def _oauth(request: Request, items: list[tuple[str, str]]) -> OAuthRequest:
    address = request.client.host if request.client else ""
    return OAuthRequest(request.method, str(request.url), request.headers, items,
                        _svc(request).endpoints(_fhir_base(request)), address)


def _reply(reply: Reply) -> Response:
    status, body, headers = reply
    content = json.dumps(body) if isinstance(body, dict | list) else (body or "")
    response = Response(content, status_code=status)
    for name, value in headers:
        response.headers[name] = value
    if isinstance(body, dict | list):
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(html: str, status: int = 200, cookies: dict[str, str] | None = None, request: Request | None = None
          ) -> Response:
    response = HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)
    if cookies and request is not None:
        for value in cookies.values():
            web.set_csrf_cookie(response, request, value)
    return response


def _current(request: Request) -> tuple[User, Session] | None:
    svc = _svc(request)
    sid = web.session_id(request, svc.keys.secret)
    if sid is None:
        return None
    session = svc.store.get_session(sid)
    if session is None or session.expires_at <= time.time():
        return None
    user = svc.store.get_user(session.user_id)
    if user is None or not user.active:
        return None
    return user, session


def _authorize_url(items: list[tuple[str, str]]) -> str:
    return f"{_AUTHORIZE_PATH}?{urlencode(items)}"


# -- discovery ----------------------------------------------------------------------------------------------------


async def smart_configuration(request: Request) -> Response:
    from fhir_server.auth.metadata import smart_configuration as document

    svc = _svc(request)
    body = document(svc.endpoints(_fhir_base(request)), registration=svc.settings.auth.dynamic_registration)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


async def openid_configuration(request: Request) -> Response:
    from fhir_server.auth.metadata import openid_configuration as document

    svc = _svc(request)
    body = document(svc.endpoints(_fhir_base(request)), registration=svc.settings.auth.dynamic_registration)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


async def jwks(request: Request) -> Response:
    return JSONResponse(_svc(request).keys.public_jwks(), headers={"Cache-Control": "public, max-age=60"})


# -- the authorization endpoint, login, logout --------------------------------------------------------------------


async def authorize(request: Request) -> Response:
    items = await _items(request)
    if request.method == "POST":
        return await _decide(request, items)
    svc = _svc(request)
    current = _current(request)
    user = current[0] if current else None
    own = dict((k, v) for k, v in items if k in _OWN_FIELDS)
    oauth_items = [(k, v) for k, v in items if k not in _OWN_FIELDS]
    oauth = _oauth(request, oauth_items)
    try:
        result = await run_in_threadpool(flow.check, svc.server, oauth, user)
    except flow.PageError as exc:
        return _page(pages.error_page("Cannot continue", str(exc)), 400)
    if not isinstance(result, flow.Ask):
        return _reply(result)
    if current is None:
        return RedirectResponse(f"/auth/login?{urlencode({'next': _authorize_url(oauth_items)})}", status_code=303)
    assert user is not None
    patient: pages.PatientChoice | None = None
    change: str | None = None
    directory = svc.patients
    if result.launch is not None and result.launch.patient:
        patient = (await directory.get(result.launch.patient) if directory else None) or \
            pages.PatientChoice(result.launch.patient, result.launch.patient)
    elif result.needs_patient and user.kind == "patient" and user.patient_id:
        patient = (await directory.get(user.patient_id) if directory else None) or \
            pages.PatientChoice(user.patient_id, user.display_name)
    elif result.needs_patient:
        picked = own.get("infirmary_patient")
        if picked and directory:
            patient = await directory.get(picked)
        if patient is None:
            query = own.get("patient_query", "")
            found = await directory.find(query, 20, _fhir_base(request)) if directory else []
            return _page(pages.picker_page(action=_AUTHORIZE_PATH, params=oauth_items, query=query, patients=found,
                                           client_name=result.client.name))
        change = _authorize_url(oauth_items)
    cookies: dict[str, str] = {}
    csrf = web.csrf_token(request, cookies, svc.keys.secret)
    html = pages.consent_page(action=_AUTHORIZE_PATH, params=oauth_items, csrf=csrf, client_name=result.client.name,
                              user_name=user.display_name or user.username, scopes=result.scopes.names(),
                              patient=patient, change_patient=change)
    return _page(html, cookies=cookies, request=request)


async def _decide(request: Request, items: list[tuple[str, str]]) -> Response:
    svc = _svc(request)
    own = dict((k, v) for k, v in items if k in _OWN_FIELDS and k != "grant_scope")
    if not web.csrf_ok(request, own.get("csrf"), svc.keys.secret):
        return _page(pages.error_page("Form expired", "Please go back and try again."), 403)
    oauth_items = [(k, v) for k, v in items if k not in _OWN_FIELDS]
    current = _current(request)
    if current is None:
        return RedirectResponse(f"/auth/login?{urlencode({'next': _authorize_url(oauth_items)})}", status_code=303)
    user, session = current
    picked = own.get("infirmary_patient")
    if picked and user.kind == "staff" and svc.patients is not None and await svc.patients.get(picked) is None:
        return _page(pages.error_page("Unknown patient", "The chosen patient is not in the record."), 400)
    chosen = [v for k, v in items if k == "grant_scope"]
    oauth = _oauth(request, oauth_items)

    def run() -> Reply:
        ask = flow.check(svc.server, oauth, user)
        if not isinstance(ask, flow.Ask):
            return ask
        return flow.decide(svc.server, oauth, ask, user, session, approve=own.get("decision") == "approve",
                           chosen=chosen, picked_patient=picked)

    try:
        reply = await run_in_threadpool(run)
    except flow.PageError as exc:
        return _page(pages.error_page("Cannot continue", str(exc)), 400)
    return _reply(reply)


def _safe_next(value: str | None) -> str | None:
    if value and value.startswith(_AUTHORIZE_PATH + "?") and "\\" not in value and "//" not in value:
        return value
    return None


async def login(request: Request) -> Response:
    svc = _svc(request)
    items = dict(await _items(request))
    next_url = _safe_next(items.get("next")) or ""
    cookies: dict[str, str] = {}
    if request.method == "GET":
        csrf = web.csrf_token(request, cookies, svc.keys.secret)
        return _page(pages.login_page(action="/auth/login", next_url=next_url, csrf=csrf), cookies=cookies,
                     request=request)
    if not web.csrf_ok(request, items.get("csrf"), svc.keys.secret):
        return _page(pages.error_page("Form expired", "Please go back and sign in again."), 403)
    username = items.get("username", "")
    address = request.client.host if request.client else ""
    result = await run_in_threadpool(svc.guard.login, username, items.get("password", ""), address)
    if result.outcome != "ok" or result.user is None:
        csrf = web.csrf_token(request, cookies, svc.keys.secret)
        status, message = (401, "Invalid username or password.") if result.outcome == "invalid" else \
            (429, "Too many failed attempts. Try again later.")
        return _page(pages.login_page(action="/auth/login", next_url=next_url, csrf=csrf, username=username,
                                      error=message), status)
    lifetime = svc.settings.auth.session_lifetime_s
    session = Session(secrets.token_urlsafe(32), result.user.id, int(time.time()), time.time() + lifetime)
    svc.store.add_session(session)
    response: Response
    if next_url:
        response = RedirectResponse(next_url, status_code=303)
    else:
        response = _page(pages.message_page("Signed in", f"You are signed in as {result.user.username}."))
    web.set_session(response, request, svc.keys.secret, session.session_id, lifetime)
    return response


async def logout(request: Request) -> Response:
    svc = _svc(request)
    cookies: dict[str, str] = {}
    if request.method == "GET":
        csrf = web.csrf_token(request, cookies, svc.keys.secret)
        return _page(pages.logout_page(action="/auth/logout", csrf=csrf), cookies=cookies, request=request)
    items = dict(await _items(request))
    if not web.csrf_ok(request, items.get("csrf"), svc.keys.secret):
        return _page(pages.error_page("Form expired", "Please go back and try again."), 403)
    sid = web.session_id(request, svc.keys.secret)
    if sid:
        svc.store.end_session(sid)
    response = _page(pages.message_page("Signed out", "You are signed out."))
    web.clear_session(response, request)
    return response


# -- token, introspection, revocation, registration ---------------------------------------------------------------


async def token(request: Request) -> Response:
    svc = _svc(request)
    oauth = _oauth(request, await _items(request))

    def run() -> Reply:
        svc.maybe_purge()
        reply: Reply = svc.server.create_token_response(oauth)
        return reply

    return _reply(await run_in_threadpool(run))


async def introspect(request: Request) -> Response:
    oauth = _oauth(request, await _items(request))
    return _reply(await run_in_threadpool(_svc(request).server.create_endpoint_response, "introspection", oauth))


async def revoke(request: Request) -> Response:
    oauth = _oauth(request, await _items(request))
    return _reply(await run_in_threadpool(_svc(request).server.create_endpoint_response, "revocation", oauth))


async def register(request: Request) -> Response:
    svc = _svc(request)
    if not svc.settings.auth.dynamic_registration:
        raise NotFound("dynamic client registration is not enabled on this server")
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _reply((400, {"error": "invalid_client_metadata",
                             "error_description": "the body must be a JSON object of client metadata"}, []))
    oauth = OAuthJsonRequest("POST", str(request.url), request.headers, data, svc.endpoints(_fhir_base(request)))
    return _reply(await run_in_threadpool(svc.server.create_endpoint_response, "client_registration", oauth))


# -- administration and EHR launch --------------------------------------------------------------------------------


def _caller(request: Request) -> AccessContext:
    return _svc(request).authenticate(request.headers.get("authorization"), _fhir_base(request))


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise InvalidRequest("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


async def admin_clients(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    if request.method == "GET":
        return JSONResponse(await run_in_threadpool(admin.list_clients, svc.core))
    body = await _json_body(request)
    return JSONResponse(await run_in_threadpool(admin.add_client, svc.core, body), status_code=201,
                        headers={"Cache-Control": "no-store"})


async def admin_client(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    client_id = request.path_params["client_id"]
    if request.method == "DELETE":
        await run_in_threadpool(admin.remove_client, svc.core, client_id)
        return Response(status_code=204)
    return JSONResponse(await run_in_threadpool(admin.get_client, svc.core, client_id))


async def admin_users(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    if request.method == "GET":
        return JSONResponse(await run_in_threadpool(admin.list_users, svc.core))
    body = await _json_body(request)
    return JSONResponse(await run_in_threadpool(admin.add_user, svc.core, body), status_code=201)


async def admin_user(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    user_id = request.path_params["user_id"]
    if request.method == "DELETE":
        await run_in_threadpool(admin.remove_user, svc.core, user_id)
        return Response(status_code=204)
    return JSONResponse(await run_in_threadpool(admin.get_user, svc.core, user_id))


async def admin_unlock(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    return JSONResponse(await run_in_threadpool(admin.unlock_user, svc.core, request.path_params["user_id"]))


async def admin_rotate_keys(request: Request) -> Response:
    svc = _svc(request)
    admin.require_admin(_caller(request))
    return JSONResponse(await run_in_threadpool(admin.rotate_keys, svc.core))


async def launch(request: Request) -> Response:
    svc = _svc(request)
    caller = _caller(request)
    body = await _json_body(request)
    patient = body.get("patient")
    if isinstance(patient, str) and svc.patients is not None and await svc.patients.get(patient) is None:
        raise InvalidRequest(f"no Patient {patient!r}", expression="patient")
    return JSONResponse(await run_in_threadpool(admin.create_launch, svc.core, caller, body), status_code=201,
                        headers={"Cache-Control": "no-store"})


async def break_glass(request: Request) -> Response:
    from fhir_server.auth.break_glass import break_glass as endpoint

    caller = _caller(request)
    body = await _json_body(request) if request.method == "POST" else None
    return await endpoint(request, caller, body)


def routes() -> list[BaseRoute]:
    """The routes to mount on the application, before the ``/fhir`` mount."""
    return [
        Route("/fhir/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route("/fhir/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Mount("/auth", routes=[
            Route("/authorize", authorize, methods=["GET", "POST"]),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["GET", "POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/introspect", introspect, methods=["POST"]),
            Route("/revoke", revoke, methods=["POST"]),
            Route("/register", register, methods=["POST"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/launch", launch, methods=["POST"]),
            Route("/break-glass", break_glass, methods=["GET", "POST", "DELETE"]),
            Route("/admin/clients", admin_clients, methods=["GET", "POST"]),
            Route("/admin/clients/{client_id}", admin_client, methods=["GET", "DELETE"]),
            Route("/admin/users", admin_users, methods=["GET", "POST"]),
            Route("/admin/users/{user_id}", admin_user, methods=["GET", "DELETE"]),
            Route("/admin/users/{user_id}/unlock", admin_unlock, methods=["POST"]),
            Route("/admin/keys/rotate", admin_rotate_keys, methods=["POST"]),
        ]),
    ]

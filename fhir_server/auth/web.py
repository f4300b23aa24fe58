"""Browser state of the authorization server: the signed session cookie and CSRF tokens.

* ``infirmary_session``: ``<session id>.<HMAC>``; the session itself (user, login time, expiry) is in the store, so
  logging out ends it everywhere.  A fresh id at every login (no session fixation).
* ``infirmary_csrf``: a random value; every state-changing form carries ``HMAC(secret, "csrf|" + value)``, which
  another site can neither read nor compute (double-submit, signed).

Both cookies are ``HttpOnly``, ``SameSite=Lax``, limited to ``/auth``, and ``Secure`` when the request came over
https (or through a proxy that says so in ``X-Forwarded-Proto``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "infirmary_session"
CSRF_COOKIE = "infirmary_csrf"
COOKIE_PATH = "/auth"


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def sign_session(secret: bytes, session_id: str) -> str:
    return f"{session_id}.{_mac(secret, 'session', session_id)}"


def session_id(request: Request, secret: bytes) -> str | None:
    """The session id of the request's cookie, when its signature holds."""
    value = request.cookies.get(SESSION_COOKIE, "")
    sid, _, mac = value.rpartition(".")
    if sid and hmac.compare_digest(mac, _mac(secret, "session", sid)):
        return sid
    return None


def set_session(response: Response, request: Request, secret: bytes, sid: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, sign_session(secret, sid), max_age=max_age, path=COOKIE_PATH,
                        httponly=True, samesite="lax", secure=_secure(request))


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request))


def csrf_token(request: Request, response_cookies: dict[str, str], secret: bytes) -> str:
    """The CSRF token for a form on this page; makes the cookie (recorded in ``response_cookies``) if missing."""
    value = request.cookies.get(CSRF_COOKIE) or response_cookies.get(CSRF_COOKIE)
    if not value:
        value = secrets.token_urlsafe(24)
        response_cookies[CSRF_COOKIE] = value
    return _mac(secret, "csrf", value)


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=_secure(request))


def csrf_ok(request: Request, submitted: str | None, secret: bytes) -> bool:
    value = request.cookies.get(CSRF_COOKIE)
    return bool(value and submitted) and hmac.compare_digest(str(submitted), _mac(secret, "csrf", str(value)))

"""Cross-origin access for browser apps on other origins (SMART apps served elsewhere).

Only the endpoints a SMART app calls from script get CORS headers: the FHIR API, the SMART and OpenID
configuration documents, the token, introspection, revocation, registration and JWKS endpoints.  The login,
consent and administration pages never do (they are top-level pages of this server, not APIs).  Preflight
requests are answered here, before the access middleware: they carry no token by design.  Bearer tokens are
not ambient credentials, so ``Access-Control-Allow-Credentials`` is never sent and ``*`` is a safe default.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_API_PREFIXES = ("/fhir",)
_AUTH_PATHS = frozenset({"/auth/token", "/auth/introspect", "/auth/revoke", "/auth/register", "/auth/jwks"})
_EXPOSED = ["Location", "Content-Location", "ETag", "Last-Modified", "Content-Type", "WWW-Authenticate",
            "X-Request-Id", "X-Progress", "Retry-After"]
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_MAX_AGE_S = 600


def cors_path(path: str) -> bool:
    """Whether a path is one a browser app on another origin may call."""
    return path.startswith(_API_PREFIXES) or path in _AUTH_PATHS


class ApiCorsMiddleware:
    """CORS for :func:`cors_path` paths only; everything else passes through untouched."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=_METHODS, allow_headers=["*"],
                                   expose_headers=_EXPOSED, allow_credentials=False, max_age=_MAX_AGE_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not cors_path(scope["path"]):
            await self.app(scope, receive, send)
        elif any(key == b"origin" for key, _ in scope["headers"]):
            await self.cors(scope, receive, send)
        else:  # not a cross-origin request: nothing to add but ``Vary: Origin``, as CORSMiddleware adds it
            await self.app(scope, receive, _vary_origin(send))


def _vary_origin(send: Send) -> Send:
    """``send`` with ``Vary: Origin`` added to the response start the way :class:`CORSMiddleware` adds it to an
    answer without an ``Origin`` (the ``Vary`` values joined into one header, ``Origin`` last) — without the
    header objects it builds per request (tests/auth/test_cors.py proves the two equal)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            at = [i for i, (key, _) in enumerate(headers) if key == b"vary"]  # ASGI header names are lowercase
            joined = (b", ".join([*(headers[i][1] for i in at), b"Origin"]))
            for i in reversed(at[1:]):
                del headers[i]
            if at:
                headers[at[0]] = (b"vary", joined)
            else:
                headers.append((b"vary", joined))
            message["headers"] = headers
        await send(message)

    return wrapped

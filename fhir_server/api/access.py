"""Access tokens on the FHIR API: who is calling, the scoped services they get, and the audit trail.

``AccessMiddleware`` wraps the application.  For every request under ``/fhir`` (except the CapabilityStatement and
the SMART discovery documents, which are public) it validates the bearer token — 401 with ``WWW-Authenticate``
when it is missing, malformed, expired, revoked or for another server — works out the caller's policy (scopes,
roles, break-glass), and leaves a :class:`RequestAccess` in the ASGI scope.  Routes take their services from
:func:`fhir_server.api.context.services`, which builds them on a scoped repository for this request only.  When
the request ends the middleware hands what it touched, and its status, to the audit writer.

With ``FHIR_AUTH__ENABLED=false`` (local development only) nothing is checked or audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import jsonio
from fhir_server.api.context import ACCESS_KEY
from fhir_server.auth.guard import AccessRecord
from fhir_server.auth.policy import AccessPolicy
from fhir_server.auth.security import Security
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import FhirError

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext, Services

_PUBLIC = ("/fhir/metadata", "/fhir/.well-known/")


class RequestAccess:
    """One authenticated request: the caller, their policy, and what the request touched."""

    __slots__ = ("_services", "context", "fhir", "policy", "record", "security")

    def __init__(self, context: AccessContext, policy: AccessPolicy, security: Security, fhir: FhirContext) -> None:
        self.context = context
        self.policy = policy
        self.security = security
        self.fhir = fhir
        self.record = AccessRecord()
        self._services: Services | None = None

    def services(self) -> Services:
        if self._services is None:
            repo = self.security.scoped(self.policy, self.record)
            self._services = self.fhir.services_for(repo)  # (no link back: no reference cycle to collect)
        return self._services

    @property
    def requester(self) -> str:
        return self.security.requester(self.policy)

    def export_record(self) -> dict[str, Any]:
        return self.security.access_record(self.policy)


def request_access(request: Request) -> RequestAccess | None:
    access: RequestAccess | None = request.scope.get(ACCESS_KEY)
    return access


def note_interaction(request: Request, interaction: str) -> None:
    """Tell the audit trail what a request was when only the service knew (batch or transaction)."""
    access = request_access(request)
    if access is not None:
        access.record.interaction = interaction


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._bases: dict[tuple[Any, ...], str] = {}
        self._security: Security | None = None
        self._fhir: FhirContext | None = None

    def _base_url(self, scope: Scope, host: bytes | None) -> str:
        """The FHIR base URL as the routes see it (``FhirContext.base_url``), remembered per scheme and host."""
        key = (scope.get("scheme"), host, None if host else tuple(scope.get("server") or ()))
        base = self._bases.get(key)
        if base is None:
            base = scope["app"].state.fhir.base_url(Request(scope))
            if len(self._bases) < 1024:
                self._bases[key] = base
        return base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/fhir" or path.startswith("/fhir/")) or \
                path.startswith(_PUBLIC):
            await self.app(scope, receive, send)
            return
        security = self._security
        if security is None:
            security = self._security = getattr(scope["app"].state, "security", None)
        if security is None or not security.enabled:
            await self.app(scope, receive, send)
            return
        fhir = self._fhir
        if fhir is None:
            fhir = self._fhir = scope["app"].state.fhir
        authorization = host = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"host":
                host = value
        client = scope.get("client")
        address = client[0] if client else None
        method = scope["method"]
        relative = path[len("/fhir"):].lstrip("/")
        query = scope.get("query_string", b"").decode("latin-1")
        base = self._base_url(scope, host)
        context: AccessContext | None = None
        try:
            context = security.authenticate(authorization, base)
            policy = security.policy(context)
        except FhirError as exc:  # a bad token (401), or the auth store unavailable (503)
            response = Response(jsonio.dumps(exc.outcome()), status_code=exc.status, headers=exc.headers,
                                media_type="application/fhir+json; charset=utf-8")
            await response(scope, receive, send)
            await security.audit_request(context, AccessRecord(), method, relative, query, exc.status, address)
            return
        access = RequestAccess(context, policy, security, fhir)
        scope[ACCESS_KEY] = access
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            await security.audit_request(context, access.record, method, relative, query, status, address,
                                         policy.break_glass)

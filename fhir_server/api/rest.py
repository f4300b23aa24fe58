"""The FHIR RESTful API routes.  Each is an adapter: parse the HTTP request, call one service, build the reply.

The routes are plain Starlette routes mounted under ``/fhir``, ordered by how often they are hit (instance
reads first), with path convertors that tell resource types (``Patient``) from ids and from the ``_history`` /
``_search`` / ``metadata`` segments.  FastAPI's dependency machinery is not needed here and costs more than the
rest of a read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from fhir_server import jsonio
from fhir_server.api import _http, bulk, everything, scheduling
from fhir_server.api.access import note_interaction
from fhir_server.api.context import ctx, services
from fhir_server.api.negotiation import (
    Format,
    fhir_response,
    negotiate,
    request_media_type,
    require_json_body,
)
from fhir_server.errors import MethodNotAllowed, UnsupportedMediaType
from fhir_server.services import history as history_service
from fhir_server.services import subsetting
from fhir_server.services.bundles import Dispatch
from fhir_server.services.capabilities import capability_statement, smart_security
from fhir_server.services.resources import PatchBody
from fhir_server.storage.base import StoredVersion


class _TypeConvertor(Convertor[str]):
    regex = "[A-Z][A-Za-z]{0,63}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _IdConvertor(Convertor[str]):
    """Anything that is not a ``_history``/``_search``/``$operation`` segment; the service checks the id."""

    regex = "[^/_$][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rtype", _TypeConvertor())
register_url_convertor("fid", _IdConvertor())

Endpoint = Callable[[Request], Awaitable[Response]]


def _by_method(**handlers: Endpoint) -> Endpoint:
    """One endpoint that dispatches on the HTTP method (405 with Allow for the others)."""
    table = {method.upper(): handler for method, handler in handlers.items()}
    allow = ", ".join(sorted(table))

    async def dispatch(request: Request) -> Response:
        handler = table.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}", headers={"Allow": allow})
        return await handler(request)

    return dispatch


# -- instance level ------------------------------------------------------------------------------------------


async def read(request: Request) -> Response:
    fmt = negotiate(request)
    p = request.path_params
    stored = await services(request).resources.read(p["resource_type"], p["id"])
    return _read_response(request, fmt, stored)


async def vread(request: Request) -> Response:
    fmt = negotiate(request)
    p = request.path_params
    stored = await services(request).resources.vread(p["resource_type"], p["id"], p["version"])
    return _read_response(request, fmt, stored)


def _read_response(request: Request, fmt: Format, stored: StoredVersion) -> Response:
    headers = _http.version_headers(stored)
    if _http.not_modified(request, stored):
        return Response(status_code=304, headers=headers)
    params = request.query_params
    summary, elements = params.get("_summary"), params.get("_elements")
    if summary is None and elements is None:
        return fhir_response(stored.body, fmt, 200, headers)
    assert stored.body is not None
    resource = jsonio.loads(stored.body)
    defs = ctx(request).defs
    if summary is not None:
        resource = subsetting.summary(resource, summary, defs)
    if elements is not None:
        resource = subsetting.elements(resource, elements, defs)
    return fhir_response(resource, fmt, 200, headers)


async def update(request: Request) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    p = request.path_params
    outcome = await services(request).resources.update(p["resource_type"], p["id"], await request.body(),
                                       request.headers.get("if-match"))
    return _http.write_response(request, fmt, outcome, c.base_url(request), "updated")


async def patch(request: Request) -> Response:
    return await _patch(request, request.path_params.get("id"))


async def _patch(request: Request, id: str | None) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    body = PatchBody(request_media_type(request) or "", await request.body())
    outcome = await services(request).resources.patch(
        request.path_params["resource_type"], id, body, query_string=request.url.query,
        if_match=request.headers.get("if-match"),
    )
    return _http.write_response(request, fmt, outcome, c.base_url(request), "patched")


async def delete(request: Request) -> Response:
    negotiate(request)
    p = request.path_params
    outcome = await services(request).resources.delete(p["resource_type"], p["id"], request.headers.get("if-match"))
    headers = {"ETag": f'W/"{outcome.version.version}"'} if outcome.version and not outcome.noop else {}
    return Response(status_code=204, headers=headers)


# -- type level ----------------------------------------------------------------------------------------------


async def create(request: Request) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    outcome = await services(request).resources.create(request.path_params["resource_type"], await request.body(),
                                       request.headers.get("if-none-exist"))
    return _http.write_response(request, fmt, outcome, c.base_url(request), "created")


async def conditional_update(request: Request) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    outcome = await services(request).resources.conditional_update(
        request.path_params["resource_type"], request.url.query, await request.body(),
        request.headers.get("if-match"),
    )
    return _http.write_response(request, fmt, outcome, c.base_url(request), "updated")


async def conditional_patch(request: Request) -> Response:
    return await _patch(request, None)


async def conditional_delete(request: Request) -> Response:
    negotiate(request)
    outcome = await services(request).resources.conditional_delete(request.path_params["resource_type"],
                                                              request.url.query)
    headers = {"ETag": f'W/"{outcome.version.version}"'} if outcome.version and not outcome.noop else {}
    return Response(status_code=204, headers=headers)


async def search_type(request: Request) -> Response:
    rtype = request.path_params["resource_type"]
    ctx(request).resources.check_type(rtype)
    return await _search(request, rtype, list(request.query_params.multi_items()))


async def search_type_post(request: Request) -> Response:
    rtype = request.path_params["resource_type"]
    ctx(request).resources.check_type(rtype)
    return await _search(request, rtype, await _form_params(request))


async def search_compartment(request: Request) -> Response:
    p = request.path_params
    ctx(request).resources.check_type(p["resource_type"])
    return await _search(request, p["resource_type"], list(request.query_params.multi_items()),
                         compartment=(p["compartment"], p["id"]))


async def _form_params(request: Request) -> list[tuple[str, str]]:
    media = request_media_type(request)
    if media not in (None, "application/x-www-form-urlencoded"):
        raise UnsupportedMediaType("_search takes application/x-www-form-urlencoded parameters",
                                   expression="Content-Type")
    body = (await request.body()).decode("utf-8", errors="replace")
    return [*request.query_params.multi_items(), *parse_qsl(body, keep_blank_values=True)]


async def _search(
    request: Request,
    resource_type: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    strict = _http.prefer_handling(request) == "strict"
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    bundle = await services(request).search.search(resource_type, params, base_url=c.base_url(request), strict=strict,
                                   compartment=compartment)
    return fhir_response(bundle, fmt)


# -- history, system level, capabilities ---------------------------------------------------------------------


async def history(request: Request) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    rtype = request.path_params.get("resource_type")
    id = request.path_params.get("id")
    if rtype is not None:
        c.resources.check_type(rtype)
    qs = request.url.query
    query = history_service.parse_history_query(rtype, id, qs, c.paging)
    page = await history_service.history(services(request).repo, query)
    path = "/".join(p for p in (rtype or "", id or "", "_history") if p)
    return fhir_response(history_service.history_bundle(c.base_url(request), path, qs, query, page), fmt)


async def capabilities(request: Request) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    base = c.base_url(request)
    security = None
    if c.security is not None and c.security.enabled:
        ends = c.security.auth.endpoints(base)
        register = f"{ends.auth_base}/register" if c.settings.auth.dynamic_registration else None
        security = smart_security(f"{ends.auth_base}/authorize", ends.token_url, f"{ends.auth_base}/introspect",
                                  f"{ends.auth_base}/revoke", register)
    return fhir_response(capability_statement(c.defs, c.search.registry, base, c.started, security), fmt)


async def search_system(request: Request) -> Response:
    return await _search(request, None, list(request.query_params.multi_items()))


async def search_system_post(request: Request) -> Response:
    return await _search(request, None, await _form_params(request))


async def batch_or_transaction(request: Request) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    bundle = await services(request).bundles.process(
        await request.body(), base_url=c.base_url(request),
        prefer=_http.prefer_return(request, default="minimal"), dispatch=_subrequests(request),
    )
    note_interaction(request, str(bundle["type"]).removesuffix("-response"))
    return fhir_response(bundle, fmt)


def _subrequests(request: Request) -> Dispatch:
    """GET entries of a Bundle run through this application's own routes, as the same client (same headers)."""
    app = request.app
    passed = [(k, v) for k, v in request.scope["headers"]
              if k in (b"host", b"authorization", b"x-forwarded-for", b"x-forwarded-proto")]

    async def dispatch(method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        path, _, query = url.partition("?")
        prefix = request.scope.get("root_path", "") + "/fhir/"
        scope = {
            **{k: request.scope[k] for k in ("type", "asgi", "http_version", "scheme", "server", "client")
               if k in request.scope},
            "method": method,
            "path": prefix + path,
            "raw_path": (prefix + path).encode(),
            "query_string": query.encode(),
            "root_path": request.scope.get("root_path", ""),
            "headers": [*passed, (b"accept", b"application/fhir+json"),
                        *((k.encode(), v.encode()) for k, v in headers.items())],
        }
        status = 500
        reply_headers: dict[str, str] = {}
        body = bytearray()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                reply_headers.update((k.decode().lower(), v.decode()) for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await app(scope, receive, send)
        return status, reply_headers, bytes(body)

    return dispatch


base_endpoint = _by_method(get=search_system, post=batch_or_transaction)

routes = [
    Route("/{resource_type:rtype}/{id:fid}", _by_method(get=read, put=update, patch=patch, delete=delete),
          methods=["GET", "PUT", "PATCH", "DELETE", "POST"]),
    Route("/{resource_type:rtype}", _by_method(get=search_type, post=create, put=conditional_update,
                                               patch=conditional_patch, delete=conditional_delete),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/{resource_type:rtype}/{id:fid}/_history/{version:fid}", _by_method(get=vread),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/{resource_type:rtype}/{id:fid}/_history", _by_method(get=history),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/{resource_type:rtype}/_history", _by_method(get=history), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/{resource_type:rtype}/_search", _by_method(post=search_type_post, get=search_type),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/{compartment:rtype}/{id:fid}/{resource_type:rtype}", _by_method(get=search_compartment),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/metadata", _by_method(get=capabilities), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/_history", _by_method(get=history), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/_search", _by_method(post=search_system_post, get=search_system),
          methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    *bulk.routes,
    *everything.routes,
    *scheduling.routes,
    Route("/", base_endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
]

router = Router(routes=routes, redirect_slashes=False)

"""``Patient/[id]/$everything`` and ``Patient/$everything``: GET with query parameters, POST with a Parameters body.

The semantics live in :mod:`fhir_server.services.everything`; these adapters parse, call it and reply.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api import _http
from fhir_server.api.context import ctx, services
from fhir_server.api.negotiation import fhir_response, negotiate, require_json_body
from fhir_server.services.everything import EverythingService


def _service(request: Request) -> EverythingService:
    return services(request).everything


async def _params(request: Request) -> list[tuple[str, str]]:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")]
    if request.method == "POST":
        require_json_body(request)
        params.extend(EverythingService.body_params(await request.body()))
    return params


async def everything_instance(request: Request) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    bundle = await _service(request).instance(
        request.path_params["id"], await _params(request), base_url=c.base_url(request),
        strict=_http.prefer_handling(request) == "strict",
    )
    return fhir_response(bundle, fmt)


async def everything_type(request: Request) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    bundle = await _service(request).type_level(
        await _params(request), base_url=c.base_url(request), strict=_http.prefer_handling(request) == "strict",
    )
    return fhir_response(bundle, fmt)


routes = [
    Route("/Patient/{id}/$everything", everything_instance, methods=["GET", "POST"]),
    Route("/Patient/$everything", everything_type, methods=["GET", "POST"]),
]

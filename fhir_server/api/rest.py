"""The FHIR RESTful API routes.  Each is an adapter: parse the HTTP request, call one service, build the reply."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.api import _http
from fhir_server.api.context import ctx
from fhir_server.api.negotiation import (
    Format,
    fhir_response,
    negotiate,
    request_media_type,
    require_json_body,
)
from fhir_server.errors import MethodNotAllowed, NotSupported, UnsupportedMediaType
from fhir_server.services import history as history_service
from fhir_server.services import subsetting
from fhir_server.services.capabilities import capability_statement
from fhir_server.services.resources import PatchBody
from fhir_server.storage.base import StoredVersion

router = APIRouter(prefix="/fhir")


@router.get("/metadata")
async def capabilities(request: Request) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    return fhir_response(capability_statement(c.defs, c.base_url(request), c.started), fmt)


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"])
async def metadata_not_allowed(request: Request) -> Response:
    raise MethodNotAllowed("/metadata only answers GET", headers={"Allow": "GET"})


@router.get("/_history")
async def history_system(request: Request) -> Response:
    return await _history(request, None, None)


@router.get("/{resource_type}/_history")
async def history_type(request: Request, resource_type: str) -> Response:
    ctx(request).resources.check_type(resource_type)
    return await _history(request, resource_type, None)


@router.get("/{resource_type}/{id}/_history")
async def history_instance(request: Request, resource_type: str, id: str) -> Response:
    ctx(request).resources.check_type(resource_type)
    return await _history(request, resource_type, id)


async def _history(request: Request, resource_type: str | None, id: str | None) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    qs = request.url.query
    query = history_service.parse_history_query(resource_type, id, qs, c.paging)
    page = await history_service.history(c.repo, query)
    path = "/".join(p for p in ("" if resource_type is None else resource_type, id or "", "_history") if p)
    return fhir_response(history_service.history_bundle(c.base_url(request), path, qs, query, page), fmt)


@router.get("/{compartment}/{id}/{resource_type}")
async def search_compartment(request: Request, compartment: str, id: str, resource_type: str) -> Response:
    c = ctx(request)
    c.resources.check_type(resource_type)
    return await _search(request, resource_type, list(request.query_params.multi_items()),
                         compartment=(compartment, id))


@router.get("/{resource_type}")
async def search_type(request: Request, resource_type: str) -> Response:
    ctx(request).resources.check_type(resource_type)
    return await _search(request, resource_type, list(request.query_params.multi_items()))


@router.post("/{resource_type}/_search")
async def search_type_post(request: Request, resource_type: str) -> Response:
    ctx(request).resources.check_type(resource_type)
    return await _search(request, resource_type, await _form_params(request))


@router.get("")
@router.get("/")
async def search_system(request: Request) -> Response:
    return await _search(request, None, list(request.query_params.multi_items()))


@router.post("/_search")
async def search_system_post(request: Request) -> Response:
    return await _search(request, None, await _form_params(request))


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
    bundle = await c.search.search(resource_type, params, base_url=c.base_url(request), strict=strict,
                                   compartment=compartment)
    return fhir_response(bundle, fmt)


@router.get("/{resource_type}/{id}/_history/{version}")
async def vread(request: Request, resource_type: str, id: str, version: str) -> Response:
    fmt = negotiate(request)
    stored = await ctx(request).resources.vread(resource_type, id, version)
    return _read_response(request, fmt, stored)


@router.get("/{resource_type}/{id}")
async def read(request: Request, resource_type: str, id: str) -> Response:
    fmt = negotiate(request)
    stored = await ctx(request).resources.read(resource_type, id)
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


@router.post("/{resource_type}")
async def create(request: Request, resource_type: str) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    outcome = await c.resources.create(resource_type, await request.body(), request.headers.get("if-none-exist"))
    return _http.write_response(request, fmt, outcome, c.base_url(request), "created")


@router.put("/{resource_type}/{id}")
async def update(request: Request, resource_type: str, id: str) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    outcome = await c.resources.update(resource_type, id, await request.body(), request.headers.get("if-match"))
    return _http.write_response(request, fmt, outcome, c.base_url(request), "updated")


@router.put("/{resource_type}")
async def conditional_update(request: Request, resource_type: str) -> Response:
    fmt = negotiate(request)
    require_json_body(request)
    c = ctx(request)
    outcome = await c.resources.conditional_update(
        resource_type, request.url.query, await request.body(), request.headers.get("if-match")
    )
    return _http.write_response(request, fmt, outcome, c.base_url(request), "updated")


@router.patch("/{resource_type}/{id}")
async def patch(request: Request, resource_type: str, id: str) -> Response:
    return await _patch(request, resource_type, id)


@router.patch("/{resource_type}")
async def conditional_patch(request: Request, resource_type: str) -> Response:
    return await _patch(request, resource_type, None)


async def _patch(request: Request, resource_type: str, id: str | None) -> Response:
    fmt = negotiate(request)
    c = ctx(request)
    body = PatchBody(request_media_type(request) or "", await request.body())
    outcome = await c.resources.patch(
        resource_type, id, body, query_string=request.url.query, if_match=request.headers.get("if-match")
    )
    return _http.write_response(request, fmt, outcome, c.base_url(request), "patched")


@router.delete("/{resource_type}/{id}")
async def delete(request: Request, resource_type: str, id: str) -> Response:
    negotiate(request)
    outcome = await ctx(request).resources.delete(resource_type, id, request.headers.get("if-match"))
    headers = {"ETag": f'W/"{outcome.version.version}"'} if outcome.version and not outcome.noop else {}
    return Response(status_code=204, headers=headers)


@router.delete("/{resource_type}")
async def conditional_delete(request: Request, resource_type: str) -> Response:
    negotiate(request)
    outcome = await ctx(request).resources.conditional_delete(resource_type, request.url.query)
    headers = {"ETag": f'W/"{outcome.version.version}"'} if outcome.version and not outcome.noop else {}
    return Response(status_code=204, headers=headers)


@router.post("")
@router.post("/")
async def batch_or_transaction(request: Request) -> Response:
    raise NotSupported("batch and transaction Bundles are not implemented yet on this server")



"""Bulk Data export routes (FHIR Bulk Data Access 2.0): kick-off, status polling, cancel, file download.

* ``GET|POST /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/{id}/$export`` with
  ``Prefer: respond-async`` → ``202`` with ``Content-Location`` (the status URL);
* ``GET {status URL}`` → ``202`` with ``X-Progress`` and ``Retry-After`` while running, ``200`` with the
  completion manifest when done, an OperationOutcome when the job failed; ``DELETE`` cancels;
* ``GET /fhir/$export-file/{job}/{name}`` → the ndjson file.

The FHIR semantics are in :mod:`fhir_server.services.bulk_export`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from fhir_server import jsonio
from fhir_server.api.access import request_access
from fhir_server.api.context import ctx, services
from fhir_server.api.negotiation import fhir_response, negotiate, require_json_body
from fhir_server.errors import InvalidRequest, Issue, operation_outcome
from fhir_server.services.bulk_export import FHIR_NDJSON, RETRY_AFTER_S, ExportAccess, Level, post_parameters


def _prefer(request: Request) -> tuple[bool, bool]:
    """(``respond-async`` asked, ``handling=lenient`` asked)."""
    tokens = [p.strip().lower().replace(" ", "") for p in request.headers.get("prefer", "").split(",")]
    return "respond-async" in tokens, "handling=lenient" in tokens


async def _kick_off(request: Request, level: Level, path: str, group_id: str | None = None) -> Response:
    fmt = negotiate(request)
    respond_async, lenient = _prefer(request)
    if not respond_async:
        raise InvalidRequest("$export runs asynchronously: send the header Prefer: respond-async",
                             expression="Prefer")
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        require_json_body(request)
        params.extend(post_parameters(await request.body()))
    c = ctx(request)
    base = c.base_url(request)
    query = request.url.query
    job_id, warnings = await c.bulk_export.kick_off(
        level, params, base_url=base, request_url=f"{base}/{path}" + (f"?{query}" if query else ""),
        group_id=group_id, lenient=lenient, access=_access(request),
    )
    status_url = f"{base}/$export-status/{job_id}"
    outcome = operation_outcome([Issue("information", "informational", f"export started (Task/{job_id})"),
                                 *warnings])
    return fhir_response(outcome, fmt, 202, {"Content-Location": status_url})


def _access(request: Request) -> ExportAccess | None:
    access = request_access(request)
    if access is None:
        return None
    policy = access.policy
    return ExportAccess(services(request).resources, lambda t: policy.reach("s", t).allowed, access.export_record(),
                        access.requester)


def _requester(request: Request) -> str | None:
    access = request_access(request)
    return access.requester if access is not None else None


async def export_system(request: Request) -> Response:
    return await _kick_off(request, "system", "$export")


async def export_patient(request: Request) -> Response:
    return await _kick_off(request, "patient", "Patient/$export")


async def export_group(request: Request) -> Response:
    group_id = request.path_params["id"]
    return await _kick_off(request, "group", f"Group/{group_id}/$export", group_id)


async def export_status(request: Request) -> Response:
    job_id = request.path_params["job"]
    c = ctx(request)
    if request.method == "DELETE":
        fmt = negotiate(request)
        await c.bulk_export.cancel(job_id, _requester(request))
        outcome = operation_outcome([Issue("information", "informational", f"export {job_id} cancelled")])
        return fhir_response(outcome, fmt, 202)
    status = await c.bulk_export.status(job_id, _requester(request))
    if status.manifest is None:
        return Response(status_code=202, headers={"X-Progress": status.progress or "in progress",
                                                  "Retry-After": str(RETRY_AFTER_S)})
    return Response(jsonio.dumps(status.manifest), status_code=200, media_type="application/json",
                    headers={"Expires": status.expires_http()})


async def export_file(request: Request) -> Response:
    p = request.path_params
    path = await ctx(request).bulk_export.file(p["job"], p["name"], _requester(request))
    return FileResponse(path, media_type=FHIR_NDJSON)


routes = [
    Route("/$export", export_system, methods=["GET", "POST"]),
    Route("/Patient/$export", export_patient, methods=["GET", "POST"]),
    Route("/Group/{id}/$export", export_group, methods=["GET", "POST"]),
    Route("/$export-status/{job}", export_status, methods=["GET", "DELETE"]),
    Route("/$export-file/{job}/{name}", export_file, methods=["GET"]),
]

"""The booking operations on Appointment (docs/scheduling.md): ``$find`` (GET or POST), ``$hold``, ``$book``,
``[id]/$reschedule`` and ``[id]/$cancel`` (POST, a Parameters body).  Semantics: fhir_server/workflows/scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.context import ctx, services
from fhir_server.api.negotiation import fhir_response, negotiate, require_json_body
from fhir_server.workflows.scheduling import Scheduling
from fhir_server.workflows.scheduling import booking as b
from fhir_server.workflows.scheduling._params import OpParams
from fhir_server.workflows.scheduling.find import PARAMS as FIND_PARAMS


def _scheduling(request: Request) -> Scheduling:
    svc = services(request)
    c = ctx(request)
    return Scheduling.of(svc.resources, svc.search, c.settings.scheduling, c.jobs)


async def _params(request: Request, operation: str, known: Sequence[str]) -> OpParams:
    if request.method == "GET":
        return OpParams.from_query(operation, request.query_params.multi_items(), known)
    require_json_body(request)
    return OpParams.from_body(operation, await request.body(), known)


async def find(request: Request) -> Response:
    fmt = negotiate(request)
    params = await _params(request, "find", FIND_PARAMS)
    return fhir_response(await _scheduling(request).finder.find(params, ctx(request).base_url(request)), fmt)


async def hold(request: Request) -> Response:
    fmt = negotiate(request)
    result = await _scheduling(request).booking.hold(await _params(request, "hold", b.HOLD_PARAMS))
    return fhir_response(result.parameters(), fmt, 201)


async def book(request: Request) -> Response:
    fmt = negotiate(request)
    result = await _scheduling(request).booking.book(await _params(request, "book", b.BOOK_PARAMS))
    return fhir_response(result.parameters(), fmt, 201 if result.appointment["meta"]["versionId"] == "1" else 200)


async def reschedule(request: Request) -> Response:
    fmt = negotiate(request)
    params = await _params(request, "reschedule", b.RESCHEDULE_PARAMS)
    result = await _scheduling(request).booking.reschedule(request.path_params["id"], params)
    return fhir_response(result.parameters(), fmt)


async def cancel(request: Request) -> Response:
    fmt = negotiate(request)
    params = await _params(request, "cancel", b.CANCEL_PARAMS)
    result = await _scheduling(request).booking.cancel(request.path_params["id"], params)
    return fhir_response(result.parameters(), fmt)


routes = [
    Route("/Appointment/$find", find, methods=["GET", "POST"]),
    Route("/Appointment/$hold", hold, methods=["POST"]),
    Route("/Appointment/$book", book, methods=["POST"]),
    Route("/Appointment/{id}/$reschedule", reschedule, methods=["POST"]),
    Route("/Appointment/{id}/$cancel", cancel, methods=["POST"]),
]

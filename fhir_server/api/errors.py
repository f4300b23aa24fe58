"""Every error leaves the server as an OperationOutcome: FHIR errors, routing errors (404/405) and crashes."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, operation_outcome

log = logging.getLogger("fhir_server.api")

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
}


def _outcome_response(status: int, outcome: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(
        jsonio.dumps(outcome),
        status_code=status,
        headers=headers,
        media_type="application/fhir+json; charset=utf-8",
    )


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return _outcome_response(exc.status, exc.outcome(), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no FHIR endpoint at {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    issue = Issue("error", _HTTP_CODES.get(status, "exception"), message)
    return _outcome_response(status, operation_outcome([issue]), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    issue = Issue("error", "invalid", "the request is not valid")
    return _outcome_response(400, operation_outcome([issue]))


async def _crash(request: Request, exc: Exception) -> Response:
    # no request content in the log: it may carry PHI
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.scope.get("route_path", ""),
              exc_info=exc)
    issue = Issue("fatal", "exception", "internal server error; the request was not completed")
    return _outcome_response(500, operation_outcome([issue]))


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _crash)

"""HTTP details shared by the routers: headers of stored versions, Prefer, conditional reads."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.negotiation import Format, fhir_response
from fhir_server.errors import Issue, operation_outcome
from fhir_server.storage.base import StoredVersion, WriteOutcome


def _instant(last_updated: str) -> datetime:
    """Parse the store's fixed-width instant (``2026-11-27T10:35:19.123456Z``) without strptime."""
    s = last_updated
    return datetime(int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]), int(s[17:19]),
                    int(s[20:26]), tzinfo=UTC)


@lru_cache(maxsize=8192)
def http_date(last_updated: str) -> str:
    return format_datetime(_instant(last_updated).replace(microsecond=0), usegmt=True)


def version_headers(stored: StoredVersion) -> dict[str, str]:
    return {"ETag": f'W/"{stored.version}"', "Last-Modified": http_date(stored.last_updated)}


def not_modified(request: Request, stored: StoredVersion) -> bool:
    """If-None-Match / If-Modified-Since on a read: True when the client's copy is current (→ 304)."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip() for t in inm.split(",")}
        return "*" in tags or f'W/"{stored.version}"' in tags or f'"{stored.version}"' in tags
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return _instant(stored.last_updated).replace(microsecond=0) <= since
    return False


def prefer_return(request: Request, default: str = "representation") -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "return":
            value = value.strip().strip('"')
            if value in ("minimal", "representation", "OperationOutcome"):
                return value
    return default


def prefer_handling(request: Request) -> str:
    """``Prefer: handling=strict|lenient`` (lenient by default)."""
    for part in request.headers.get("prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "handling" and value.strip().strip('"') in ("strict", "lenient"):
            return value.strip().strip('"')
    return "lenient"


def write_response(
    request: Request, fmt: Format, outcome: WriteOutcome, base: str, action: str
) -> Response:
    """The response to create/update/patch: status, ETag, Last-Modified, Location, body per ``Prefer``."""
    stored = outcome.version
    assert stored is not None
    headers = version_headers(stored)
    headers["Location"] = f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version}"
    mode = prefer_return(request)
    if mode == "minimal":
        return fhir_response(None, fmt, outcome.status, headers)
    if mode == "OperationOutcome":
        verb = "matched existing" if outcome.noop else action
        issue = Issue("information", "informational", f"{verb} {stored.resource_type}/{stored.id} "
                      f"version {stored.version}")
        return fhir_response(operation_outcome([issue]), fmt, outcome.status, headers)
    return fhir_response(stored.body, fmt, outcome.status, headers)

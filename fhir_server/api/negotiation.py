"""Content negotiation and FHIR response building: ``Accept``, ``_format``, ``_pretty``, ``Content-Type``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.errors import NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
_ANY = {"*/*", "application/*"}
_FORMAT_ALIASES = {"json": FHIR_JSON, "application/json": "application/json", FHIR_JSON: FHIR_JSON,
                   "application/json+fhir": FHIR_JSON, "text/json": "application/json"}
_XML = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


@dataclass(frozen=True)
class Format:
    media_type: str
    pretty: bool


def _media_types(accept: str) -> list[tuple[str, float]]:
    out = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        quality = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        out.append((pieces[0].lower(), quality))
    return out


def negotiate(request: Request) -> Format:
    """The response format: ``_format`` wins over ``Accept``; JSON only (XML and others get 406)."""
    params = request.query_params
    pretty = params.get("_pretty", "false").lower() == "true"
    fmt = params.get("_format")
    if fmt is not None:
        key = fmt.strip().lower().split(";")[0]
        if key in _FORMAT_ALIASES:
            return Format(_FORMAT_ALIASES[key], pretty)
        kind = "XML" if key in _XML else repr(fmt)
        raise NotAcceptable(
            f"_format {kind} is not supported; this server speaks FHIR JSON (_format=json)", expression="_format"
        )
    accept = request.headers.get("accept")
    if not accept:
        return Format(FHIR_JSON, pretty)
    offered = [(m, q) for m, q in _media_types(accept) if q > 0]
    if not offered:
        raise NotAcceptable(f"Accept {accept!r} allows nothing this server produces (application/fhir+json)")
    for media, _ in sorted(offered, key=lambda mq: -mq[1]):
        if media in _JSON_TYPES:
            return Format("application/json" if media == "application/json" else FHIR_JSON, pretty)
        if media in _ANY:
            return Format(FHIR_JSON, pretty)
    raise NotAcceptable(f"Accept {accept!r} is not supported; this server produces application/fhir+json")


def request_media_type(request: Request) -> str | None:
    ctype = request.headers.get("content-type")
    return ctype.split(";")[0].strip().lower() if ctype else None


def require_json_body(request: Request) -> None:
    """Bodies of create/update must be FHIR JSON (415 for anything else; a missing type is taken as JSON)."""
    media = request_media_type(request)
    if media is None or media in _JSON_TYPES:
        return
    raise UnsupportedMediaType(
        f"Content-Type {media!r} is not supported; send application/fhir+json", expression="Content-Type"
    )


def fhir_response(
    content: bytes | dict[str, Any] | None,
    fmt: Format,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A FHIR JSON response; ``bytes`` are sent as they are unless ``_pretty`` asks for indentation."""
    if content is None:
        return Response(status_code=status, headers=headers)
    if isinstance(content, bytes):
        body = jsonio.dumps(jsonio.loads(content), pretty=True) if fmt.pretty else content
    else:
        body = jsonio.dumps(content, pretty=fmt.pretty)
    return Response(body, status_code=status, headers=headers, media_type=f"{fmt.media_type}; charset=utf-8")


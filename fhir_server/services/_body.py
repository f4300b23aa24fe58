"""Turn a request body into a resource dict, with errors that say what is wrong."""

from __future__ import annotations

import re
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import InvalidRequest, StructureError

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise InvalidRequest("the request body is empty")
    try:
        return jsonio.loads(body)
    except jsonio.JsonError as exc:
        raise StructureError(f"the request body is not valid JSON: {exc}") from exc


def parse_resource(body: bytes) -> dict[str, Any]:
    value = parse_json(body)
    if not isinstance(value, dict):
        raise StructureError("the request body must be a JSON object (a FHIR resource)")
    if not isinstance(value.get("resourceType"), str):
        raise StructureError("the resource has no resourceType", expression="resourceType")
    return value


def check_id(id: str, *, expression: str = "id") -> None:
    if not ID_RE.match(id):
        raise InvalidRequest(f"{id!r} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", expression=expression)

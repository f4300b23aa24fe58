"""The history interaction at instance, type and system level (R4 http.html#history).

Results are newest first.  Paging uses a cursor on the commit sequence, so following ``next`` links is stable
while new versions are being written (history is append-only; new versions appear only before the first page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_server.errors import InvalidRequest
from fhir_server.search.dates import parse_period
from fhir_server.storage._meta import normalise_instant
from fhir_server.storage.base import HistoryPage, HistoryQuery, Repository, StoredVersion

_KNOWN = {"_count", "_since", "_at", "_cursor", "_format", "_pretty", "_summary", "_elements"}


@dataclass(frozen=True)
class Paging:
    default_count: int
    max_count: int


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise InvalidRequest(f"{name} may appear only once", expression=name)
    return values[0] if values else None


def _instant_bound(value: str, name: str, end: bool = False) -> str:
    try:
        start, stop = parse_period(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}", expression=name) from exc
    return normalise_instant(stop if end else start)


def parse_history_query(
    resource_type: str | None, id: str | None, query_string: str, paging: Paging
) -> HistoryQuery:
    params = parse_qsl(query_string, keep_blank_values=True)
    for name, _ in params:
        if name not in _KNOWN:
            raise InvalidRequest(f"unknown history parameter {name!r}", expression=name)
    count = paging.default_count
    raw_count = _param(params, "_count")
    if raw_count is not None:
        if not raw_count.isdigit():
            raise InvalidRequest("_count must be a non-negative integer", expression="_count")
        count = min(int(raw_count), paging.max_count)
    since = _param(params, "_since")
    at = _param(params, "_at")
    cursor = _param(params, "_cursor")
    before = after = None
    if cursor is not None:
        if len(cursor) < 2 or cursor[0] not in "ba" or not cursor[1:].isdigit():
            raise InvalidRequest("_cursor is not a cursor this server issued", expression="_cursor")
        before, after = (int(cursor[1:]), None) if cursor[0] == "b" else (None, int(cursor[1:]))
    return HistoryQuery(
        resource_type=resource_type,
        id=id,
        since=_instant_bound(since, "_since") if since else None,
        at_start=_instant_bound(at, "_at") if at else None,
        at_end=_instant_bound(at, "_at", end=True) if at else None,
        count=count,
        before_seq=before,
        after_seq=after,
    )


_METHODS = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def _entry(base: str, version: StoredVersion) -> dict[str, Any]:
    url = f"{version.resource_type}/{version.id}"
    method = _METHODS[version.method]
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if version.body is not None:
        entry["resource"] = orjson.Fragment(version.body)
    entry["request"] = {"method": method, "url": version.resource_type if method == "POST" else url}
    status = {"POST": "201 Created", "PUT": "201 Created" if version.version == 1 else "200 OK"}.get(
        method, "204 No Content"
    )
    entry["response"] = {
        "status": status,
        "etag": f'W/"{version.version}"',
        "lastModified": version.last_updated,
    }
    return entry


def history_bundle(base: str, path: str, query_string: str, query: HistoryQuery, page: HistoryPage) -> bytes:
    """The ``history`` Bundle, serialised; stored bodies are embedded without re-parsing."""
    kept = [(k, v) for k, v in parse_qsl(query_string, keep_blank_values=True) if k not in ("_cursor",)]

    def link(relation: str, cursor: str | None) -> dict[str, str]:
        params = kept + ([("_cursor", cursor)] if cursor else [])
        qs = urlencode(params)
        return {"relation": relation, "url": f"{base}/{path}" + (f"?{qs}" if qs else "")}

    links = [link("self", None if query.before_seq is None and query.after_seq is None else _cursor(query))]
    links.append(link("first", None))
    if page.entries and page.has_older:
        links.append(link("next", f"b{page.entries[-1].seq}"))
    if page.entries and page.has_newer:
        links.append(link("previous", f"a{page.entries[0].seq}"))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [_entry(base, e.version) for e in page.entries]
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def _cursor(query: HistoryQuery) -> str:
    return f"b{query.before_seq}" if query.before_seq is not None else f"a{query.after_seq}"


async def history(repo: Repository, query: HistoryQuery) -> HistoryPage:
    return await repo.history(query)

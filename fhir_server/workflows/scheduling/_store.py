"""What the scheduling services share: the request's (or a job's) services, settings, clock and job queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import Gone, NotFound
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import SchedulingSettings
from fhir_server.storage.base import SearchPage, SearchRequest, StoredVersion

Enqueue = Callable[..., Awaitable[Any]]
QUERY_BASE = "urn:infirmary:scheduling"  # no absolute references are used in these queries


@dataclass
class Deps:
    resources: ResourceService
    search: SearchService
    settings: SchedulingSettings
    now: Callable[[], float] = time.time
    enqueue: Enqueue | None = None  # jobs: JobQueue.enqueue (hold expiry); None: holds lapse when next touched
    base_url: str = field(default=QUERY_BASE)


@dataclass(frozen=True)
class Current:
    """A resource as read: its body and the version it was read at (writes are checked against it)."""

    resource: dict[str, Any]
    version: int


async def read(deps: Deps, rtype: str, id: str, expression: str | None = None) -> Current:
    """The current version; 404 (naming ``expression``) when unknown or deleted."""
    try:
        stored = await deps.resources.read(rtype, id)
    except (NotFound, Gone):
        raise NotFound(f"{rtype}/{id} is not known", expression=expression or rtype) from None
    return current(stored)


def current(stored: StoredVersion) -> Current:
    assert stored.body is not None
    return Current(jsonio.loads(stored.body), stored.version)


async def search_page(deps: Deps, rtype: str, params: Sequence[tuple[str, str]], count: int,
                      cursor: str | None = None) -> SearchPage:
    parsed = deps.search.parse(rtype, params, strict=True, base_url=deps.base_url)
    query = await deps.search.resolve(parsed.query)
    return await deps.search.repo.search(SearchRequest(query, count, cursor, total=False))


async def search_all(deps: Deps, rtype: str, params: Sequence[tuple[str, str]],
                     page_size: int = 1000) -> AsyncIterator[Current]:
    cursor: str | None = None
    while True:
        page = await search_page(deps, rtype, params, page_size, cursor)
        for stored in page.matches:
            yield current(stored)
        cursor = page.next_cursor
        if cursor is None:
            return

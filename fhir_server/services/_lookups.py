"""The conditional look-ups of one transaction plan: each criteria string parsed once, and the matches of all of
them fetched in one store round trip before the plan needs them (``Repository.find_many``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fhir_server.errors import FhirError
from fhir_server.search.model import SearchQuery

if TYPE_CHECKING:
    from fhir_server.services.resources import ResourceService


class Lookups:
    """Valid for one plan only: the matches are those of the moment :meth:`prefetch` ran (the writer checks the
    plan's assumptions again inside its transaction)."""

    def __init__(self, resources: ResourceService) -> None:
        self.resources = resources
        self._parsed: dict[tuple[str, str], SearchQuery] = {}
        self._found: dict[tuple[str, str], tuple[int, list[str]]] = {}  # (type, query) → (limit, ids)

    def criteria(self, resource_type: str, query: str) -> SearchQuery:
        """``ResourceService.criteria``, once per distinct (type, query) of the plan."""
        key = (resource_type, query)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = self.resources.criteria(resource_type, query)
        return parsed

    async def prefetch(self, wanted: Iterable[tuple[str, str]], limit_of: Callable[[str], int]) -> None:
        """Fetch the matches of every (type, query) in one round trip.  What does not parse is left out: the plan
        meets it again in :meth:`find` and reports the error where it belongs."""
        keys: list[tuple[str, str]] = []
        batch: list[tuple[SearchQuery, int]] = []
        for rtype, query in dict.fromkeys(wanted):
            if not query or (rtype, query) in self._found:
                continue
            try:
                self.resources.check_type(rtype)
                parsed = self.criteria(rtype, query)
            except FhirError:
                continue
            keys.append((rtype, query))
            batch.append((parsed, limit_of(rtype)))
        if batch:
            found = await self.resources.repo.find_many(batch)
            for key, (_, limit), ids in zip(keys, batch, found, strict=True):
                self._found[key] = (limit, ids)

    async def find(self, resource_type: str, query: str, limit: int) -> list[str]:
        """The first ``limit`` current matches (prefetched when it was fetched with that limit)."""
        hit = self._found.get((resource_type, query))
        if hit is not None and hit[0] == limit:
            return hit[1]
        return await self.resources.repo.find(self.criteria(resource_type, query), limit=limit)

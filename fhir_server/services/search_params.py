"""SearchParameter resources created at run time: checked before they are stored, in force for new writes as
soon as they are committed, and back-filled over existing data by a reindex job visible as a ``Task``.

Only ``status = active`` parameters are put in force (the R4 core package's own SearchParameters are ``draft``);
one identical to a parameter already in force changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import ValidationFailed
from fhir_server.indexing.extract import Indexer, SearchParam, search_param_from_resource
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.search.model import SearchQuery
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import Repository, SearchRequest, WriteOp, WriteOutcome

log = logging.getLogger(__name__)
PAGE = 500


def check(resource: dict[str, Any]) -> None:
    """Refuse an active SearchParameter whose expression cannot be compiled (422, naming the element)."""
    if resource.get("status") != "active":
        return
    param = search_param_from_resource(resource)
    if not param.code or not param.base:
        raise ValidationFailed("an active SearchParameter needs code and base", expression="SearchParameter.code")
    if param.indexed:
        try:
            Indexer.check(param)
        except ValueError as exc:
            raise ValidationFailed(f"the expression cannot be compiled: {exc}",
                                   expression="SearchParameter.expression") from exc


async def load_search_parameters(repo: Repository, indexer: Indexer) -> int:
    """Put the active SearchParameters of the store in force in ``indexer``; how many were new to it."""
    loaded = 0
    cursor = None
    while True:
        page = await repo.search(SearchRequest(SearchQuery("SearchParameter"), PAGE, cursor, total=False))
        for stored in page.matches:
            assert stored.body is not None
            if activate(indexer, jsonio.loads(stored.body)) is not None:
                loaded += 1
        cursor = page.next_cursor
        if cursor is None:
            return loaded


def activate(indexer: Indexer, resource: dict[str, Any]) -> SearchParam | None:
    """Index by an active SearchParameter from now on (None: inactive, or already in force)."""
    if resource.get("status") != "active":
        return None
    param = search_param_from_resource(resource)
    if indexer.by_url(param.url) == param:
        return None
    indexer.add(param)
    return param


class SearchParameters:
    def __init__(self, repo: Repository, indexer: Indexer, runner: InProcessRunner) -> None:
        self.repo = repo
        self.indexer = indexer
        self.runner = runner
        self.services: Any = None  # the ResourceService, set by the app (it writes the Task and re-indexes)

    async def load(self) -> int:
        """Put the active SearchParameters of the store in force (at start-up)."""
        return await load_search_parameters(self.repo, self.indexer)

    def _activate(self, resource: dict[str, Any]) -> SearchParam | None:
        return activate(self.indexer, resource)

    async def after_write(self, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        if outcome.resource_type != "SearchParameter" or resource is None or outcome.noop:
            return
        param = self._activate(resource)
        if param is not None:
            task_id = await self._start_task(param, outcome.id or "")
            self.runner.submit(f"reindex {param.code}", self.reindex, task_id, param.url)

    async def _start_task(self, param: SearchParam, sp_id: str) -> str:
        task = {
            "resourceType": "Task",
            "status": "in-progress",
            "intent": "order",
            "code": {"text": "reindex"},
            "description": f"Back-fill the search index of {', '.join(param.base)} for SearchParameter "
                           f"{param.code} ({param.url})",
            "focus": {"reference": f"SearchParameter/{sp_id}"},
            "authoredOn": format_instant(time.time()),
            "input": [{"type": {"text": "search-parameter"}, "valueCanonical": param.url}],
        }
        outcome = await self.services.create("Task", jsonio.dumps(task))
        return str(outcome.id)

    async def reindex(self, task_id: str, url: str) -> int:
        """Re-extract the index entries of every resource of the parameter's base types."""
        param = self.indexer.by_url(url)
        done = 0
        status, note = "completed", ""
        try:
            if param is not None:
                for resource_type in sorted(self.indexer.types_of(param)):
                    done += await self._reindex_type(resource_type)
        except Exception as exc:  # the Task records the failure
            log.exception("reindex failed")
            status, note = "failed", type(exc).__name__
        await self._finish_task(task_id, status, done, note)
        return done

    async def _reindex_type(self, resource_type: str) -> int:
        done, cursor = 0, None
        while True:
            page = await self.repo.search(SearchRequest(SearchQuery(resource_type), PAGE, cursor, total=False))
            ops = []
            for stored in page.matches:
                assert stored.body is not None
                resource = jsonio.loads(stored.body)
                ops.append(WriteOp("reindex", resource_type, id=stored.id, if_match=stored.version,
                                   index=self.services.index(resource)))
            if ops:
                await self.repo.write(ops)
                done += len(ops)
            cursor = page.next_cursor
            if cursor is None:
                return done

    async def _finish_task(self, task_id: str, status: str, count: int, note: str) -> None:
        stored = await self.repo.read("Task", task_id)
        if stored is None or stored.body is None:
            return
        task = jsonio.loads(stored.body)
        task["status"] = status
        task["output"] = [{"type": {"text": "resources-reindexed"}, "valueInteger": count}]
        if note:
            task["statusReason"] = {"text": note}
        await self.services.update("Task", task_id, jsonio.dumps(task))

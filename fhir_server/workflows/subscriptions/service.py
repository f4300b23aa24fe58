"""FHIR R4 criteria-based Subscriptions: which ones a committed write concerns, and telling their subscribers.

* **Index.** The Subscriptions that are not ``off`` are held in memory by the type their criteria select:
  loaded at start, updated by the post-write reaction when a Subscription is written in this process, and
  refreshed from the store's history every ``FHIR_SUBSCRIPTIONS__INDEX_REFRESH_S`` for those written by other
  processes.
* **Matching.** On every committed write the reaction evaluates the criteria of the Subscriptions on the written
  type with the in-memory matcher (:mod:`fhir_server.search.matcher`) against the written resource's index
  entries; criteria with chains, ``_has`` or ``_list`` are answered by the store when the notification is sent.
* **Scopes.** Before anything is sent, the written version is read through the scoped repository of the access
  stamped on the Subscription (:mod:`fhir_server.auth.stamps`): a subscriber hears only about what the token
  that wrote the Subscription may read.  That check is audited as ``POST $job/subscriptions.check`` with the
  Subscription's writer as agent (the jobs identity for a Subscription written without authorization).
* **rest-hook.** Each notification is a job (``subscriptions.notify`` with ids), so it runs in-process or on a
  Celery worker alike; failures are retried with exponential back-off (``retry_backoff_s`` doubling up to
  ``retry_backoff_max_s``) for ``retry_max_age_s`` (24 h by default), the Subscription showing ``status = error``
  and the last ``error`` meanwhile and ``active`` again after a success.  The handshake (``requested`` →
  ``active``) is a POST with no body, retried the same way.
* **websocket.** Subscribers bound to this process (``bind <id>`` on ``/fhir/$websocket``) get ``ping <id>``:
  at once for a write this process committed (the post-write reaction), and within
  ``FHIR_SUBSCRIPTIONS__WEBSOCKET_FEED_S`` for one another process committed (other API workers, Celery workers,
  the HL7 listener on its own): while a subscriber is bound here, the process reads the store's change feed —
  the versions committed after the last one it saw (``HistoryQuery.after_seq``, commit order) — and evaluates
  them like the reaction does.  Each version is handled once, whichever path sees it first (:meth:`_claim`).

The server owns ``status`` and ``error``: it writes them straight to the repository (a new version, no
post-write reaction, so its own writes never loop back here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fhir_server import jsonio
from fhir_server.auth.stamps import recorded_access
from fhir_server.errors import ConcurrentChange, FhirError, PreconditionFailed
from fhir_server.indexing.extract import canonicalise
from fhir_server.jobs.registry import JobArg, JobQueue, backoff_delay
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.search.matcher import Candidate, MatcherError, matches
from fhir_server.search.model import Clause, SearchQuery, TokenValue
from fhir_server.search.registry import SearchRegistry
from fhir_server.services.resources import ResourceService
from fhir_server.settings import SubscriptionSettings
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import (
    HistoryQuery,
    Repository,
    SearchRequest,
    StoredVersion,
    WriteOp,
    WriteOutcome,
)
from fhir_server.workflows.subscriptions._http import DeliveryFailed, RestHookSender
from fhir_server.workflows.subscriptions._hub import WebsocketHub
from fhir_server.workflows.subscriptions._index import SubscriptionIndex
from fhir_server.workflows.subscriptions.definition import (
    Definition,
    needs_store,
    normalise_status,
    parse_channel,
    parse_criteria,
    strict_parser,
)

log = logging.getLogger(__name__)

NOTIFY = "subscriptions.notify"
HANDSHAKE = "subscriptions.handshake"
CHECK = "subscriptions.check"  # how the check of what a subscriber may hear is named in the audit trail
_PAGE = 200
_CLAIMS = 10_000  # versions remembered as handled for websocket subscribers (by the reaction or the feed)


class SubscriptionService:
    def __init__(self, repo: Repository, resources: ResourceService, registry: SearchRegistry,
                 settings: SubscriptionSettings, runner: InProcessRunner, base_urls: tuple[str, ...] = ()) -> None:
        self.repo = repo
        self.resources = resources
        self.registry = registry
        self.settings = settings
        self.runner = runner
        self.index = SubscriptionIndex()
        self.hub = WebsocketHub()
        self.sender = RestHookSender(settings.delivery_timeout_s)
        # auth on: ``Security.acting`` — the audited repository a notification reads through, from the access
        # stamped on the Subscription (None: as the jobs identity)
        self.acting: Callable[[str, dict[str, Any] | None], AbstractAsyncContextManager[Repository]] | None = None
        self._parse = strict_parser(registry, base_urls, canonicalise)
        self._since: str | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._feed_seq: int | None = None  # the newest version the change feed has looked at
        self._feeder: asyncio.Task[None] | None = None
        self._claimed: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    # -- definitions ------------------------------------------------------------------------------------------

    def check(self, resource: dict[str, Any]) -> None:
        """``before_write`` of a client's Subscription: refuse what is not supported, set the status it may ask."""
        parse_criteria(resource.get("criteria"), self.registry, self._parse)
        parse_channel(resource, self.settings.allow_http_loopback)
        normalise_status(resource)

    def definition(self, resource: dict[str, Any], version: int) -> Definition | None:
        """The Subscription as the index holds it (None: ``off``, or no longer supported)."""
        status = str(resource.get("status", ""))
        if status == "off":
            return None
        try:
            query = parse_criteria(resource.get("criteria"), self.registry, self._parse)
            channel = parse_channel(resource, self.settings.allow_http_loopback)
        except FhirError as exc:
            log.warning("Subscription/%s is not evaluated: %s", resource.get("id"), exc.diagnostics)
            return None
        assert query.resource_type is not None
        return Definition(str(resource.get("id", "")), version, status, query.resource_type, query, channel,
                          needs_store(query.criteria), recorded_access(resource))

    async def current(self, sub_id: str) -> Definition | None:
        stored = await self.repo.read("Subscription", sub_id)
        if stored is None or stored.body is None:
            return None
        return self.definition(jsonio.loads(stored.body), stored.version)

    def _hold(self, stored: StoredVersion) -> None:
        if stored.body is None:
            self.index.remove(stored.id)
            return
        definition = self.definition(jsonio.loads(stored.body), stored.version)
        if definition is None:
            self.index.remove(stored.id)
        else:
            self.index.put(definition)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every Subscription that is not off, then keep up with other processes' writes."""
        self._since = format_instant(time.time())
        cursor = None
        while True:
            page = await self.repo.search(SearchRequest(SearchQuery("Subscription"), _PAGE, cursor, total=False))
            for stored in page.matches:
                self._hold(stored)
            cursor = page.next_cursor
            if cursor is None:
                break
        if self.settings.index_refresh_s > 0:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(), name="subscriptions")
        if self.settings.websocket_feed_s > 0:
            self._feed_seq = await self._newest_seq()
            self._feeder = asyncio.get_running_loop().create_task(self._feed_loop(), name="subscriptions feed")

    async def stop(self) -> None:
        for task in (self._refresher, self._feeder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._refresher = self._feeder = None
        await self.sender.close()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.index_refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the Subscription index failed")

    async def refresh(self) -> None:
        """Pick up the Subscriptions written since the last look (by any process)."""
        since, self._since = self._since, format_instant(time.time())
        newest: dict[str, StoredVersion] = {}
        before: int | None = None
        while True:
            page = await self.repo.history(HistoryQuery("Subscription", since=since, count=_PAGE,
                                                        before_seq=before, total=False))
            for entry in page.entries:
                newest.setdefault(entry.version.id, entry.version)  # newest first
            if not page.has_older or not page.entries:
                break
            before = page.entries[-1].seq
        for stored in newest.values():
            self._hold(stored)

    # -- the change feed: websocket subscribers hear other processes' writes ------------------------------------

    async def _feed_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.websocket_feed_s)
            try:
                await self.feed()
            except Exception:
                log.exception("reading the change feed for websocket subscribers failed")

    async def _newest_seq(self) -> int:
        page = await self.repo.history(HistoryQuery(count=1, total=False))
        return page.entries[0].seq if page.entries else 0

    async def feed(self) -> int:
        """Ping the websocket subscribers bound here about the versions committed since the last look that no
        path here has handled; answers how many versions were read.  With nobody bound the feed only moves its
        position (a subscriber hears what is written after it binds, not before)."""
        if not self.hub.any_bound():
            self._feed_seq = await self._newest_seq()
            return 0
        read = 0
        while True:
            page = await self.repo.history(HistoryQuery(count=_PAGE, after_seq=self._feed_seq or 0, total=False))
            entries = sorted(page.entries, key=lambda e: e.seq)  # oldest first
            for entry in entries:
                await self._fed(entry.version)
                self._feed_seq = entry.seq
            read += len(entries)
            if len(entries) < _PAGE:
                return read

    async def _fed(self, stored: StoredVersion) -> None:
        if stored.body is None:
            return  # deletions are not notified
        bound = [d for d in self.index.for_type(stored.resource_type)
                 if d.channel.type == "websocket" and self.hub.bound(d.id)]
        if not bound or not self._claim((stored.resource_type, stored.id, stored.version)):
            return
        candidate = Candidate(stored.resource_type, stored.id, _epoch(stored.last_updated),
                              self.resources.index(jsonio.loads(stored.body)))
        for definition in bound:
            if definition.needs_store or self._matches(definition, candidate):
                self.runner.submit("subscription websocket ping", self._ping, definition, stored.resource_type,
                                   stored.id, stored.version)

    def _claim(self, key: tuple[str, str, int]) -> bool:
        """True the first time a version is offered to the websocket subscribers (by the post-write reaction or
        by the feed, both on this event loop), False after."""
        if key in self._claimed:
            return False
        self._claimed[key] = None
        if len(self._claimed) > _CLAIMS:
            self._claimed.popitem(last=False)
        return True

    # -- the post-write reaction -------------------------------------------------------------------------------

    def reacts_to(self, resource_type: str) -> bool:
        """False when :meth:`on_write` would do nothing for a write of this type (no Subscription is about it)."""
        return resource_type == "Subscription" or self.index.has_type(resource_type)

    async def on_write(self, queue: JobQueue, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        if outcome.resource_type == "Subscription" and outcome.id is not None:
            await self._subscription_written(queue, outcome.id, outcome, resource)
        definitions = self.index.for_type(outcome.resource_type)
        if not definitions or resource is None or outcome.version is None or outcome.id is None:
            return  # deletions are not notified
        candidate = Candidate(outcome.resource_type, outcome.id, _epoch(outcome.version.last_updated),
                              self.resources.index(resource))
        websockets: bool | None = None  # this version not yet offered to websocket subscribers (see _claim)
        for definition in definitions:
            if definition.channel.type == "websocket":
                if websockets is None:
                    websockets = self._claim((outcome.resource_type, outcome.id, outcome.version.version))
                if not websockets:
                    continue
            if definition.needs_store or self._matches(definition, candidate):
                await self.dispatch(queue, definition, outcome.resource_type, outcome.id, outcome.version.version)

    @staticmethod
    def _matches(definition: Definition, candidate: Candidate) -> bool:
        try:
            return matches(definition.query.criteria, candidate)
        except MatcherError:
            return False

    async def _subscription_written(self, queue: JobQueue, sub_id: str, outcome: WriteOutcome,
                                    resource: dict[str, Any] | None) -> None:
        # the stored version, not ``resource``: only the stored one carries the stamps of the scoped repository
        stored = outcome.version
        definition = None if resource is None or stored is None or stored.body is None else \
            self.definition(jsonio.loads(stored.body), stored.version)
        if definition is None:
            self.index.remove(sub_id)
            return
        self.index.put(definition)
        if definition.status != "requested":
            return
        if definition.channel.type == "websocket":
            await self.set_status(sub_id, "active")  # nothing to shake hands with: the client binds
        else:
            await queue.enqueue(HANDSHAKE, sub_id, queue.clock.now(), 1)

    async def dispatch(self, queue: JobQueue, definition: Definition, resource_type: str, id: str,
                       version: int) -> None:
        if definition.channel.type == "rest-hook":
            await queue.enqueue(NOTIFY, definition.id, resource_type, id, version, queue.clock.now(), 1)
        else:
            self.runner.submit("subscription websocket ping", self._ping, definition, resource_type, id, version)

    async def _ping(self, definition: Definition, resource_type: str, id: str, version: int) -> None:
        if self.hub.bound(definition.id) and await self.visible(definition, resource_type, id, version) is not None:
            await self.hub.ping(definition.id)

    # -- what a subscriber may hear -----------------------------------------------------------------------------

    async def visible(self, definition: Definition, resource_type: str, id: str, version: int
                      ) -> StoredVersion | None:
        """The written version, if the Subscription's access may read it and it still meets the criteria."""
        if self.acting is None:
            return await self._visible(self.repo, definition, resource_type, id, version)
        async with self.acting(CHECK, definition.access) as repo:
            return await self._visible(repo, definition, resource_type, id, version)

    async def _visible(self, repo: Repository, definition: Definition, resource_type: str, id: str,
                       version: int) -> StoredVersion | None:
        try:
            stored = await repo.vread(resource_type, id, version)
        except FhirError:
            return None  # out of the writer's reach (or the type is not readable with its scopes)
        if stored is None or stored.deleted:
            return None
        if definition.needs_store:
            by_id = Clause("_id", "id", (TokenValue(None, id),))
            found = await repo.find(SearchQuery(resource_type, (*definition.query.criteria, by_id)), limit=1)
            if not found:
                return None
        return stored

    # -- rest-hook delivery (the job functions call these) ------------------------------------------------------

    async def notify(self, queue: JobQueue, sub_id: str, resource_type: str, id: str, version: int,
                     first_try: float, attempt: int) -> None:
        definition = await self.current(sub_id)
        if definition is None or definition.channel.type != "rest-hook":
            return  # turned off, deleted or changed meanwhile
        stored = await self.visible(definition, resource_type, id, version)
        if stored is None:
            return
        body = stored.body if definition.channel.payload is not None else None
        try:
            await self.sender.post(definition.channel, body)
        except DeliveryFailed as exc:
            await self._failed(queue, definition, str(exc), first_try, attempt,
                               (NOTIFY, sub_id, resource_type, id, version))
            return
        if definition.status != "active":
            await self.set_status(sub_id, "active")

    async def handshake(self, queue: JobQueue, sub_id: str, first_try: float, attempt: int) -> None:
        definition = await self.current(sub_id)
        if definition is None or definition.channel.type != "rest-hook" or definition.status == "active":
            return
        try:
            await self.sender.post(definition.channel, None)
        except DeliveryFailed as exc:
            await self._failed(queue, definition, f"handshake: {exc}", first_try, attempt, (HANDSHAKE, sub_id))
            return
        await self.set_status(sub_id, "active")

    async def _failed(self, queue: JobQueue, definition: Definition, reason: str, first_try: float, attempt: int,
                      job: tuple[JobArg, ...]) -> None:
        now = queue.clock.now()
        delay = backoff_delay(attempt, self.settings.retry_backoff_s, self.settings.retry_backoff_max_s)
        if now + delay - first_try > self.settings.retry_max_age_s:
            hours = self.settings.retry_max_age_s / 3600
            await self.set_status(definition.id, "error", f"{reason}; a notification was dropped after retrying "
                                                          f"for {hours:g} h")
            return
        await self.set_status(definition.id, "error", f"{reason}; retrying")
        name, *args = job
        await queue.enqueue(str(name), *args, first_try, attempt + 1, at=now + delay)

    # -- status, owned by the server ------------------------------------------------------------------------------

    async def set_status(self, sub_id: str, status: str, error: str | None = None) -> bool:
        """Write ``status`` (and ``error``) as a new version unless they are already so; False when the
        Subscription is gone, off, or was changed by a client meanwhile (whose write wins)."""
        stored = await self.repo.read("Subscription", sub_id)
        if stored is None or stored.body is None:
            return False
        resource: dict[str, Any] = jsonio.loads(stored.body)
        if resource.get("status") == "off":
            return False
        if resource.get("status") == status and resource.get("error") == error:
            return True
        resource["status"] = status
        if error is None:
            resource.pop("error", None)
        else:
            resource["error"] = error
        op = WriteOp("update", "Subscription", id=sub_id, resource=resource, index=self.resources.index(resource),
                     if_match=stored.version, expect_resolved=True, expect_id=sub_id)
        try:
            (outcome,) = await self.repo.write([op])
        except (PreconditionFailed, ConcurrentChange):
            return False
        if outcome.version is not None:
            self._hold(outcome.version)
        return True


def _epoch(instant: str) -> float:
    try:
        return dt.datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0

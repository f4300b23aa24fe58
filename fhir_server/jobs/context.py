"""What a task function (or a post-write reaction) is given: services, the queue, the clock.

Background work acts as a named system identity and is audited like a request: ``job_services`` is the one place
that turns a run into scoped services (the jobs identity ``infirmary-jobs``, ``system/*.cruds``) and, when the
run ends, into an audit submission (``Security.acting``).  Both runners and the post-write hook enter it through
``JobContext.audited``; other background work outside the queue through ``job_services``.  With authorization
off nothing is scoped or audited, as for requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext, Services
    from fhir_server.jobs.clock import Clock
    from fhir_server.jobs.registry import JobQueue
    from fhir_server.services.resources import ResourceService
    from fhir_server.services.search import SearchService
    from fhir_server.settings import Settings
    from fhir_server.storage.base import Repository


@asynccontextmanager
async def job_services(fhir: FhirContext, name: str) -> AsyncIterator[Services]:
    """Services for one run of background work ``name``: scoped to the jobs identity and audited as
    ``POST $job/<name>`` when the run ends (with authorization off: the application's unscoped services)."""
    security = fhir.security
    if security is None or not security.enabled:
        yield fhir.unscoped()
        return
    async with security.acting(name) as repo:
        yield fhir.services_for(repo)


@dataclass(frozen=True)
class JobContext:
    """Tasks act as the system identity ``infirmary-jobs`` (a task has no user; what it may do was decided when
    the work was asked for): inside ``audited`` its services are scoped and what they touch is audited; outside
    (``scoped`` None) they are the application's.  ``attempt`` counts from 1; ``max_attempts`` is the number the
    runner will make."""

    fhir: FhirContext
    queue: JobQueue
    clock: Clock
    attempt: int = 1
    max_attempts: int = 1
    key: str | None = None
    scoped: Services | None = None

    @asynccontextmanager
    async def audited(self, name: str) -> AsyncIterator[JobContext]:
        """This context for one run of ``name``, with services scoped and audited (see ``job_services``)."""
        async with job_services(self.fhir, name) as services:
            yield replace(self, scoped=services)

    @property
    def services(self) -> Services:
        return self.scoped if self.scoped is not None else self.fhir.unscoped()

    @property
    def resources(self) -> ResourceService:
        return self.services.resources

    @property
    def search(self) -> SearchService:
        return self.services.search

    @property
    def repo(self) -> Repository:
        return self.services.repo

    @property
    def settings(self) -> Settings:
        return self.fhir.settings

    @property
    def final_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def now(self) -> float:
        return self.clock.now()

    def for_attempt(self, attempt: int, max_attempts: int, key: str | None) -> JobContext:
        return replace(self, attempt=attempt, max_attempts=max_attempts, key=key)

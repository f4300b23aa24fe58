"""What a task function (or a post-write reaction) is given: the application's services, the queue, the clock."""

from __future__ import annotations

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


@dataclass(frozen=True)
class JobContext:
    """Tasks act as the system: unscoped services (a task has no user; what it may do was decided when the work
    was asked for).  ``attempt`` counts from 1; ``max_attempts`` is the number the runner will make."""

    fhir: FhirContext
    queue: JobQueue
    clock: Clock
    attempt: int = 1
    max_attempts: int = 1
    key: str | None = None

    @property
    def services(self) -> Services:
        return self.fhir.unscoped()

    @property
    def resources(self) -> ResourceService:
        return self.fhir.resources

    @property
    def search(self) -> SearchService:
        return self.fhir.search

    @property
    def repo(self) -> Repository:
        return self.fhir.repo

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

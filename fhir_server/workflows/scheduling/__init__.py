"""Appointments (docs/scheduling.md): specialties, availability → Schedules and Slots, and the booking operations
``$find``, ``$hold``, ``$book``, ``$reschedule`` and ``$cancel``.

The background work (slot generation, hold expiry) is in :mod:`fhir_server.workflows.scheduling.tasks`.
"""

from __future__ import annotations

from fhir_server.jobs.registry import JobQueue
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import SchedulingSettings
from fhir_server.workflows.scheduling._store import Deps
from fhir_server.workflows.scheduling.booking import BookingService
from fhir_server.workflows.scheduling.find import FindService
from fhir_server.workflows.scheduling.generate import SlotGenerator


class Scheduling:
    """The scheduling services on one set of services (a request's scoped ones, or a job's)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.finder = FindService(deps)
        self.booking = BookingService(deps)
        self.generator = SlotGenerator(deps)

    @classmethod
    def of(cls, resources: ResourceService, search: SearchService, settings: SchedulingSettings,
           queue: JobQueue | None) -> Scheduling:
        if queue is None:
            return cls(Deps(resources, search, settings))
        return cls(Deps(resources, search, settings, now=queue.clock.now, enqueue=queue.enqueue))


__all__ = ["BookingService", "Deps", "FindService", "Scheduling", "SlotGenerator"]

"""Where the task modules are listed and the queue is chosen (``FHIR_JOBS__BACKEND``): one place for both the
API process (``create_app``) and the Celery worker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fhir_server.jobs.clock import Clock
from fhir_server.jobs.registry import JobQueue

if TYPE_CHECKING:
    from fhir_server.jobs.runner import InProcessRunner
    from fhir_server.settings import Settings

# Each module registers its tasks (@task), periodic tasks (TASKS.every) and post-write reactions (@on_write)
# when imported.  A workflow package that has background work adds its module here.
TASK_MODULES: tuple[str, ...] = (
    "fhir_server.workflows.subscriptions.tasks",
    "fhir_server.workflows.scheduling.tasks",
    "fhir_server.workflows.notifications.tasks",
    "hl7_adapters.outbound.tasks",
)


def load_modules() -> None:
    for name in TASK_MODULES:
        importlib.import_module(name)


def build_queue(settings: Settings, runner: InProcessRunner, clock: Clock | None = None) -> JobQueue:
    """The in-process runner (embedded default) or a Celery client (production)."""
    if clock is not None:
        runner.clock = clock
    if settings.jobs.backend == "celery":
        from fhir_server.jobs.celery_app import CeleryQueue

        return CeleryQueue(settings, clock)
    return runner

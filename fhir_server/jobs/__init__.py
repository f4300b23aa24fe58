"""Background work (DESIGN.md "Background work goes through one post-write hook"); guide: docs/jobs.md.

The interface the workflow packages code against (as agreed in the issue 7 split; refinements noted here):

```python
from fhir_server.jobs import JobContext, on_write, task, TASKS

@task("scheduling.generate_slots")            # a task by name; arguments are ids / str / int / float / bool
async def generate_slots(ctx: JobContext, practitioner_role_id: str) -> None: ...

TASKS.every("scheduling.generate_all", lambda settings: 3600.0)  # periodic, no arguments; seconds or f(Settings)

@on_write("Appointment")                      # after commit: (ctx, outcome, resource | None); enqueue, no slow work
async def appointment_changed(ctx: JobContext, outcome: WriteOutcome, resource: dict | None) -> None:
    await ctx.queue.enqueue("notifications.appointment_changed", outcome.id, outcome.version.version)

queue: JobQueue = fhir_context.jobs           # InProcessRunner (embedded) or CeleryQueue (FHIR_JOBS__BACKEND=celery)
await queue.enqueue("scheduling.generate_slots", role_id, at=None | datetime | epoch_seconds, key=None | "dedupe")
```

Refinements: ``enqueue`` also accepts epoch seconds for ``at`` and returns whether the job was queued (False
when a job with the same ``key`` is still queued or running).  ``JobContext`` has ``fhir`` (the FhirContext),
``services``/``resources``/``search``/``repo``/``settings`` (scoped to the jobs identity ``infirmary-jobs`` and
audited while a task or reaction runs: ``JobContext.audited``), ``queue``,
``clock`` and ``now()``, and ``attempt``/``max_attempts``/``final_attempt`` for tasks that record failures.
A task raises any exception to be retried with exponential back-off (``FHIR_JOBS__MAX_ATTEMPTS``,
``FHIR_JOBS__BACKOFF_S`` doubling up to ``FHIR_JOBS__BACKOFF_MAX_S``; per task: ``@task(name, max_attempts=…,
backoff_s=…, backoff_max_s=…)``) or ``PermanentFailure`` to stop at once.  Task modules are listed in
``fhir_server/jobs/wiring.py`` (``TASK_MODULES``): the API process and the Celery worker import the same list.
"""

from fhir_server.jobs.clock import Clock, ManualClock, SystemClock
from fhir_server.jobs.context import JobContext
from fhir_server.jobs.hooks import REACTIONS, on_write
from fhir_server.jobs.registry import (
    TASKS,
    JobArg,
    JobQueue,
    PermanentFailure,
    RetryAt,
    TaskRegistry,
    UnknownTask,
    task,
)

__all__ = [
    "REACTIONS",
    "TASKS",
    "Clock",
    "JobArg",
    "JobContext",
    "JobQueue",
    "ManualClock",
    "PermanentFailure",
    "RetryAt",
    "SystemClock",
    "TaskRegistry",
    "UnknownTask",
    "on_write",
    "task",
]

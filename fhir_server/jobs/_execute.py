"""One attempt of one job, the same under both runners: run it, and decide what follows a failure."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_server.jobs.registry import JobArg, PermanentFailure, RetryAt, TaskSpec, backoff_delay

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext
    from fhir_server.settings import JobsSettings

log = logging.getLogger("fhir_server.jobs")


@dataclass(frozen=True)
class Attempt:
    """What happened: ``retry_at`` is set when the job should run again (attempt + 1) then."""

    ok: bool
    retry_at: float | None = None
    error: str | None = None


def limits(spec: TaskSpec, settings: JobsSettings) -> tuple[int, float, float]:
    return (
        spec.max_attempts or settings.max_attempts,
        spec.backoff_s if spec.backoff_s is not None else settings.backoff_s,
        spec.backoff_max_s if spec.backoff_max_s is not None else settings.backoff_max_s,
    )


async def run_attempt(spec: TaskSpec, ctx: JobContext, args: tuple[JobArg, ...],
                      settings: JobsSettings) -> Attempt:
    max_attempts, base, most = limits(spec, settings)
    ctx = ctx.for_attempt(ctx.attempt, max_attempts, ctx.key)
    try:
        async with ctx.audited(spec.name) as run:  # scoped services; audited as the jobs identity
            await spec.fn(run, *args)
    except RetryAt as exc:  # the task's own schedule: not a failure of the job
        return Attempt(False, exc.at, _describe(exc))
    except PermanentFailure as exc:
        log.warning("job %s failed for good (attempt %d): %s", spec.name, ctx.attempt, type(exc).__name__)
        return Attempt(False, None, _describe(exc))
    except Exception as exc:
        # only the exception type in the log (messages may carry addresses); tasks record details on resources
        if ctx.attempt >= max_attempts:
            log.error("job %s failed on its last attempt (%d): %s", spec.name, ctx.attempt, type(exc).__name__)
            return Attempt(False, None, _describe(exc))
        delay = backoff_delay(ctx.attempt, base, most)
        log.warning("job %s attempt %d failed (%s); retrying in %.1f s", spec.name, ctx.attempt,
                    type(exc).__name__, delay)
        return Attempt(False, ctx.now() + delay, _describe(exc))
    return Attempt(True)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__

"""Task functions registered by name, and the queue interface both runners implement.

A task is an ``async def`` taking a :class:`~fhir_server.jobs.context.JobContext` and plain arguments (ids,
strings, numbers): never resources, so that the same call can cross a process boundary as JSON (Celery).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from fhir_server.jobs.clock import Clock

JobArg = str | int | float | bool | None
TaskFn = Callable[..., Awaitable[Any]]
_F = TypeVar("_F", bound=TaskFn)


class UnknownTask(LookupError):
    pass


class PermanentFailure(Exception):
    """Raised by a task when trying again cannot help (bad data): no retry."""


class RetryAt(Exception):
    """Raised by a task that keeps its own attempt count and back-off (on a FHIR resource, so that a restart
    loses nothing; the HL7 order job): run the same job again at ``at`` (epoch seconds).  The runner re-queues
    it under the same key, which stays held meanwhile, whatever ``max_attempts`` says."""

    def __init__(self, at: float, reason: str = "") -> None:
        super().__init__(reason)
        self.at = float(at)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: TaskFn
    max_attempts: int | None = None  # None: the FHIR_JOBS__MAX_ATTEMPTS default
    backoff_s: float | None = None  # first retry delay; doubles each time (FHIR_JOBS__BACKOFF_S)
    backoff_max_s: float | None = None  # longest delay between two attempts (FHIR_JOBS__BACKOFF_MAX_S)


@dataclass(frozen=True)
class Periodic:
    name: str  # a registered task, called without arguments
    every_s: float | Callable[[Any], float]  # seconds, or a function of the Settings giving seconds

    def seconds(self, settings: Any) -> float:
        return float(self.every_s(settings) if callable(self.every_s) else self.every_s)


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._periodic: dict[str, Periodic] = {}

    def register(self, spec: TaskSpec) -> None:
        existing = self._tasks.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            qualname = getattr(existing.fn, "__qualname__", "?")
            raise ValueError(f"task {spec.name!r} is already registered by {qualname}")
        self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(f"no task is registered as {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(list(self._tasks.values()))

    def every(self, name: str, every_s: float | Callable[[Any], float]) -> None:
        """Run task ``name`` (no arguments) periodically: in-process by the runner, in production by Celery beat.
        ``every_s``: seconds, or a function of the application's ``Settings`` giving seconds."""
        self._periodic[name] = Periodic(name, every_s)

    def periodic(self) -> list[Periodic]:
        return list(self._periodic.values())


TASKS = TaskRegistry()


def task(name: str, *, max_attempts: int | None = None, backoff_s: float | None = None,
         backoff_max_s: float | None = None, registry: TaskRegistry | None = None) -> Callable[[_F], _F]:
    """Register ``fn(ctx, *args)`` as task ``name``."""

    def decorate(fn: _F) -> _F:
        (registry or TASKS).register(TaskSpec(name, fn, max_attempts, backoff_s, backoff_max_s))
        return fn

    return decorate


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before attempt ``attempt + 1`` after attempt ``attempt`` failed: base, 2·base, 4·base, … ≤ max."""
    if attempt >= 64:
        return max_s
    return min(max_s, base_s * math.pow(2, attempt - 1))


class JobQueue(Protocol):
    """Where work is sent: the in-process runner (embedded default) or Celery (production)."""

    clock: Clock

    async def enqueue(self, name: str, *args: JobArg, at: datetime | float | None = None,
                      key: str | None = None) -> bool:
        """Run task ``name`` with ``args`` now, or at ``at`` (an aware datetime or epoch seconds).  With ``key``,
        nothing is queued while a job with the same key is still queued or running; returns whether it was."""
        ...


def epoch(at: datetime | float | None, now: float) -> float:
    if at is None:
        return now
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("a job time must be timezone-aware")
        return at.timestamp()
    return float(at)


def check_args(name: str, args: tuple[Any, ...]) -> None:
    for arg in args:
        if arg is not None and not isinstance(arg, str | int | float | bool):
            raise TypeError(f"task {name!r}: arguments are ids, strings and numbers, not {type(arg).__name__}")

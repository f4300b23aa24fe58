"""The in-process job runner of the embedded default.

Two services in one object:

* ``submit(name, fn, *args)``: run a coroutine now in the background, tracked and cancelled at shutdown (bulk
  export, reindexing).
* the :class:`~fhir_server.jobs.registry.JobQueue` of registered tasks: ``enqueue(name, *args, at=, key=)``
  keeps a time-ordered queue in memory, runs each job when the clock reaches its time (at most
  ``FHIR_JOBS__CONCURRENCY`` at once), retries a failed job with exponential back-off, and runs the periodic
  tasks (``TaskRegistry.every``).  With a :class:`~fhir_server.jobs.journal.JobJournal` (the server's, in
  ``<data_dir>/jobs.db``) every accepted job is also on disk until it ends, and a restart queues it again; work
  kept in the store (a due ``CommunicationRequest``) is found again by the periodic sweeps as well.

Task functions take ids, never resources, so that the same functions run under Celery in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server.jobs._execute import run_attempt
from fhir_server.jobs.clock import Clock, SystemClock
from fhir_server.jobs.context import JobContext
from fhir_server.jobs.registry import TASKS, JobArg, TaskRegistry, check_args, epoch

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext
    from fhir_server.jobs.journal import JobJournal
    from fhir_server.settings import JobsSettings, Settings

log = logging.getLogger(__name__)
_PERIODIC = "periodic:"  # the key prefix of periodic jobs (queued anew at every start, never journaled)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    name: str = field(compare=False)
    args: tuple[JobArg, ...] = field(compare=False)
    key: str | None = field(compare=False, default=None)
    attempt: int = field(compare=False, default=1)
    jid: int | None = field(compare=False, default=None)  # its row in the journal


class InProcessRunner:
    def __init__(self, clock: Clock | None = None, registry: TaskRegistry | None = None,
                 settings: JobsSettings | None = None) -> None:
        from fhir_server.settings import JobsSettings

        self._tasks: set[asyncio.Task[Any]] = set()
        self.clock: Clock = clock or SystemClock()
        self.registry = registry or TASKS
        self.settings = settings or JobsSettings()
        self._fhir: FhirContext | None = None
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._keys: set[str] = set()
        self._next_periodic: dict[str, float] = {}
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[Any]] = set()  # queued jobs now running (not other submitted work)
        self.journal: JobJournal | None = None  # set before start: queued jobs survive a restart

    # -- plain background coroutines ---------------------------------------------------------------------------

    def submit(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._run(name, fn, *args), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed", name)
            raise

    # -- the task queue ------------------------------------------------------------------------------------------

    def bind(self, fhir: FhirContext) -> None:
        """The application whose services the tasks use (set once by ``create_app``)."""
        self._fhir = fhir

    async def start(self, periodic: bool = True) -> None:
        """Start the scheduler (in the application's lifespan); periodic tasks run once now, then every period."""
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self.clock.subscribe(self._poke)
        if periodic:
            now = self.clock.now()
            self._next_periodic = {p.name: now for p in self.registry.periodic()}
        if self.journal is not None:
            self.journal.open()
            self._resume(self.journal)
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="job scheduler")

    def _resume(self, journal: JobJournal) -> None:
        """Queue again the journaled jobs of runners that are gone."""
        resumed = 0
        for job in journal.take_over():
            if job.name not in self.registry or (job.key is not None and job.key in self._keys):
                log.warning("a journaled %s job is dropped (%s)", job.name,
                            "no such task" if job.name not in self.registry else "queued twice")
                journal.done(job.id)
                continue
            if job.key is not None:
                self._keys.add(job.key)
            heapq.heappush(self._heap, _Job(job.due, next(self._seq), job.name, job.args, job.key, job.attempt,
                                            job.id))
            resumed += 1
        if resumed:
            log.info("%d queued jobs resumed from the journal", resumed)

    async def enqueue(self, name: str, *args: JobArg, at: datetime | float | None = None,
                      key: str | None = None) -> bool:
        self.registry.get(name)  # UnknownTask now, not when it is due
        check_args(name, args)
        if key is not None:
            if key in self._keys:
                return False
            self._keys.add(key)
        due = epoch(at, self.clock.now())
        jid = None
        if self.journal is not None and self.journal.is_open and not (key or "").startswith(_PERIODIC):
            jid = self.journal.add(name, tuple(args), due, key)
        heapq.heappush(self._heap, _Job(due, next(self._seq), name, tuple(args), key, jid=jid))
        self._poke()
        return True

    def pending(self) -> list[tuple[float, str]]:
        """(due time, task name) of every queued job, soonest first (diagnostics and tests)."""
        return [(job.due, job.name) for job in sorted(self._heap)]

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self.clock.now()
            try:
                await self._queue_periodic(now)
            except Exception:  # a broken periodic task must not stop the scheduler
                log.exception("periodic jobs could not be queued")
            while self._heap and self._heap[0].due <= now:
                job = heapq.heappop(self._heap)
                running = self.submit(job.name, self._execute, job)
                self._running.add(running)
                running.add_done_callback(self._running.discard)
            wake_at = min([*([self._heap[0].due] if self._heap else []), *self._next_periodic.values()],
                          default=None)
            timeout = None if wake_at is None else self.clock.wait_s(wake_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _queue_periodic(self, now: float) -> None:
        for periodic in self.registry.periodic():
            due = self._next_periodic.get(periodic.name)
            if due is None or due > now:
                continue
            self._next_periodic[periodic.name] = now + periodic.seconds(self._settings())
            await self.enqueue(periodic.name, key=f"{_PERIODIC}{periodic.name}")

    def _settings(self) -> Settings:
        from fhir_server.settings import Settings

        return self._fhir.settings if self._fhir is not None else Settings()

    async def _execute(self, job: _Job) -> None:
        if self._fhir is None:
            raise RuntimeError("the job runner is not bound to an application")
        assert self._slots is not None
        spec = self.registry.get(job.name)
        ctx = JobContext(self._fhir, self, self.clock, job.attempt, 1, job.key)
        try:
            async with self._slots:
                result = await run_attempt(spec, ctx, job.args, self.settings)
        except BaseException:  # cancelled at shutdown: its journal row stays, and the next start runs it again
            self._release(job.key)
            raise
        if result.retry_at is not None:
            if self.journal is not None and job.jid is not None:
                self.journal.again(job.jid, result.retry_at, job.attempt + 1)
            heapq.heappush(self._heap, _Job(result.retry_at, next(self._seq), job.name, job.args, job.key,
                                            job.attempt + 1, job.jid))
            self._poke()
        else:
            if self.journal is not None and job.jid is not None:
                self.journal.done(job.jid)
            self._release(job.key)

    def _release(self, key: str | None) -> None:
        if key is not None:
            self._keys.discard(key)

    async def idle(self) -> None:
        """Wait until no queued job is due or running (tests: after moving the clock, let everything due happen).
        Other background work (``submit``) is not waited for."""
        while True:
            await asyncio.sleep(0)
            if self._heap and self._heap[0].due <= self.clock.now():
                self._poke()
                await asyncio.sleep(0.001)
                continue
            if self._running:
                await asyncio.gather(*list(self._running), return_exceptions=True)
                continue
            if self._wake is not None and self._wake.is_set():
                await asyncio.sleep(0.001)  # the scheduler has not looked yet
                continue
            return

    async def drain(self) -> None:
        """Wait for every running job (tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.journal is not None:
            self.journal.close()  # what is still queued is released to the next start

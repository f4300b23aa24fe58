"""The Celery app of the production deployment: Redis broker, one Celery task per registered task name, Celery
beat for the periodic tasks.  The same task functions as the in-process runner, through the same attempt logic
(:mod:`fhir_server.jobs._execute`): a failure is re-sent with an ETA (exponential back-off) rather than retried
by Celery itself, so both runners count attempts alike.

Each worker process builds the application (repository, services, audit) once, on an event loop of its own in
a background thread, and runs every task on it; a task's AuditEvents (it acts as the jobs identity,
:mod:`fhir_server.jobs.context`) are stored before the task is acknowledged, and the audit sink is stopped
(flushed, or spooled) when the worker process shuts down.  ``infirmary worker`` and ``infirmary beat`` start them; with
the Celery command line use ``celery -A fhir_server.jobs.celery_app:app worker``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from fhir_server.jobs._execute import run_attempt
from fhir_server.jobs.clock import Clock, SystemClock
from fhir_server.jobs.context import JobContext
from fhir_server.jobs.registry import TASKS, JobArg, check_args, epoch
from fhir_server.jobs.wiring import load_modules
from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from redis import Redis

KEY_PREFIX = "infirmary:job-key:"


class CeleryQueue:
    """The JobQueue of the API processes (and of tasks running in a worker): sends tasks to Redis."""

    def __init__(self, settings: Settings, clock: Clock | None = None, celery: Celery | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._celery = celery
        self._redis: Redis | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = create_celery(self.settings)
        return self._celery

    def _client(self) -> Redis:
        if self._redis is None:
            from redis import Redis

            self._redis = Redis.from_url(self.settings.jobs.redis_url)
        return self._redis

    async def enqueue(self, name: str, *args: JobArg, at: datetime | float | None = None,
                      key: str | None = None, attempt: int = 1) -> bool:
        TASKS.get(name)
        check_args(name, args)
        due = epoch(at, self.clock.now())
        return await asyncio.to_thread(self._send, name, args, due, key, attempt)

    def _send(self, name: str, args: tuple[JobArg, ...], due: float, key: str | None, attempt: int) -> bool:
        delay = max(0.0, due - self.clock.now())
        if key is not None:
            ttl = int(delay + self.settings.jobs.key_ttl_s)
            if attempt == 1:
                if not self._client().set(KEY_PREFIX + key, "1", nx=True, ex=ttl):
                    return False  # the same work is queued or running
            else:  # the job sends itself again (a retry, RetryAt): the key it holds must outlive the wait
                self._client().expire(KEY_PREFIX + key, ttl)
        eta = datetime.fromtimestamp(time.time() + delay, UTC) if delay > 0 else None
        self.celery.send_task(name, args=list(args), kwargs={"_attempt": attempt, "_key": key}, eta=eta)
        return True

    async def release(self, key: str | None) -> None:
        if key is not None:
            await asyncio.to_thread(self._client().delete, KEY_PREFIX + key)


class _WorkerApp:
    """The application of one worker process, built on first use and kept for the life of the process."""

    def __init__(self, settings: Settings) -> None:
        from fhir_server.app import create_app

        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="infirmary-worker-loop", daemon=True)
        self._thread.start()
        self.app: FastAPI = create_app(settings)
        self._lifespan: Any = None
        self._call(self._open())

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    async def _open(self) -> None:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()

    def run(self, name: str, args: tuple[JobArg, ...], attempt: int, key: str | None) -> bool:
        return bool(self._call(self._run(name, args, attempt, key)))

    async def _run(self, name: str, args: tuple[JobArg, ...], attempt: int, key: str | None) -> bool:
        fhir = self.app.state.fhir
        queue: CeleryQueue = fhir.jobs
        ctx = JobContext(fhir, queue, queue.clock, attempt, 1, key)
        result = await run_attempt(TASKS.get(name), ctx, args, self.settings.jobs)
        await self._flush_audit()
        if result.retry_at is not None:
            await queue.enqueue(name, *args, at=result.retry_at, key=key, attempt=attempt + 1)
        else:
            await queue.release(key)
        return result.ok

    async def _flush_audit(self) -> None:
        """The run's AuditEvents stored before Celery acknowledges the task (a worker killed later loses none)."""
        security = self.app.state.fhir.security
        if security is not None and security.enabled:
            await security.audit_writer.flush()

    def close(self) -> None:
        if self._lifespan is not None:
            self._call(self._lifespan.__aexit__(None, None, None))
            self._lifespan = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


_worker: _WorkerApp | None = None
_worker_pid = 0
_worker_lock = threading.Lock()


def worker_app(settings: Settings) -> _WorkerApp:
    global _worker, _worker_pid
    with _worker_lock:
        if _worker is None or _worker_pid != os.getpid():
            _worker = _WorkerApp(settings)
            _worker_pid = os.getpid()
        return _worker


def _close_worker(**_: Any) -> None:
    global _worker
    with _worker_lock:
        if _worker is not None and _worker_pid == os.getpid():
            _worker.close()
            _worker = None


worker_process_shutdown.connect(_close_worker, weak=False)
worker_shutdown.connect(_close_worker, weak=False)


def _register(app: Celery, name: str, settings: Settings) -> None:
    def run(*args: JobArg, _attempt: int = 1, _key: str | None = None) -> bool:
        return worker_app(settings).run(name, tuple(args), _attempt, _key)

    run.__name__ = run.__qualname__ = name.replace(".", "_")
    app.task(name=name, acks_late=True, reject_on_worker_lost=True)(run)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    load_modules()
    app = Celery("infirmary", broker=settings.jobs.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(settings.jobs.backoff_max_s * 2 + 3600)},
        timezone="UTC",
        worker_hijack_root_logger=False,
    )
    for spec in TASKS:
        _register(app, spec.name, settings)
    schedule = {}
    for periodic in TASKS.periodic():
        schedule[periodic.name] = {"task": periodic.name, "schedule": periodic.seconds(settings)}
    app.conf.beat_schedule = schedule
    return app


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """``app``, for ``celery -A fhir_server.jobs.celery_app:app``: built on first use from the FHIR_* environment."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_celery()
        return _app
    raise AttributeError(name)

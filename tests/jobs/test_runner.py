"""The in-process runner: delayed jobs under a hand-driven clock, retries with back-off, job keys, periodic
tasks, and the post-write hook dispatching reactions by resource type."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from fhir_server.jobs import (
    JobContext,
    ManualClock,
    PermanentFailure,
    RetryAt,
    TaskRegistry,
    UnknownTask,
    task,
)
from fhir_server.jobs.hooks import REACTIONS, on_write
from fhir_server.jobs.registry import backoff_delay
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.settings import JobsSettings
from fhir_server.storage.base import WriteOutcome


@pytest.fixture
async def runner(app: Any) -> Any:
    clock = ManualClock(1_000_000.0)
    registry = TaskRegistry()
    r = InProcessRunner(clock, registry, JobsSettings(max_attempts=4, backoff_s=10, backoff_max_s=25))
    r.bind(app.state.fhir)
    await r.start()
    yield r, clock, registry
    await r.close()


async def test_a_delayed_job_runs_when_the_clock_reaches_its_time(runner: Any) -> None:
    r, clock, registry = runner
    seen: list[tuple[str, float]] = []

    @task("t.record", registry=registry)
    async def record(ctx: JobContext, value: str) -> None:
        seen.append((value, ctx.now()))

    await r.enqueue("t.record", "now")
    await r.enqueue("t.record", "later", at=clock.now() + 3600)
    await r.idle()
    assert seen == [("now", 1_000_000.0)]
    clock.advance(3599)
    await r.idle()
    assert len(seen) == 1
    clock.advance(1)
    await r.idle()
    assert seen[1] == ("later", 1_003_600.0)


async def test_failures_are_retried_with_exponential_back_off_then_given_up(runner: Any) -> None:
    r, clock, registry = runner
    attempts: list[tuple[int, float, bool]] = []

    @task("t.flaky", registry=registry)
    async def flaky(ctx: JobContext) -> None:
        attempts.append((ctx.attempt, ctx.now(), ctx.final_attempt))
        raise ConnectionError("down")

    start = clock.now()
    await r.enqueue("t.flaky", key="only-one")
    await r.idle()
    assert await r.enqueue("t.flaky", key="only-one") is False  # still waiting for its retry
    for step in (10, 20, 25):  # 10, 20, then capped at 25
        clock.advance(step - 0.5)
        await r.idle()
        n = len(attempts)
        clock.advance(0.5)
        await r.idle()
        assert len(attempts) == n + 1
    assert [(a, t - start) for a, t, _ in attempts] == [(1, 0), (2, 10), (3, 30), (4, 55)]
    assert [final for *_, final in attempts] == [False, False, False, True]
    assert r.pending() == []
    assert await r.enqueue("t.flaky", key="only-one") is True  # the key is free once given up


async def test_retry_at_runs_the_job_again_at_its_time_under_the_same_key(runner: Any) -> None:
    """A task keeping its own schedule (the HL7 order): RetryAt is not a failure, so the runner's max_attempts
    (4 here) does not stop it, and the key stays held until the task ends."""
    r, clock, registry = runner
    runs: list[float] = []

    @task("t.own_schedule", registry=registry)
    async def own_schedule(ctx: JobContext) -> None:
        runs.append(ctx.now() - 1_000_000.0)
        if len(runs) < 6:
            raise RetryAt(ctx.now() + 7 * len(runs))

    await r.enqueue("t.own_schedule", key="mine")
    await r.idle()
    for step in (7, 14, 21, 28, 35):
        assert await r.enqueue("t.own_schedule", key="mine") is False
        clock.advance(step - 1)
        await r.idle()
        n = len(runs)
        clock.advance(1)
        await r.idle()
        assert len(runs) == n + 1
    assert runs == [0, 7, 21, 42, 70, 105] and r.pending() == []
    assert await r.enqueue("t.own_schedule", key="mine") is True


async def test_a_permanent_failure_is_not_retried_and_unknown_tasks_are_refused(runner: Any) -> None:
    r, _, registry = runner
    calls: list[int] = []

    @task("t.bad", registry=registry)
    async def bad(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise PermanentFailure("bad data")

    await r.enqueue("t.bad")
    await r.idle()
    assert calls == [1] and r.pending() == []
    with pytest.raises(UnknownTask):
        await r.enqueue("t.nothing")
    with pytest.raises(TypeError):
        await r.enqueue("t.bad", {"resourceType": "Patient"})  # type: ignore[arg-type]


async def test_periodic_tasks_run_at_start_and_every_period(app: Any) -> None:
    clock = ManualClock(0.0)
    registry = TaskRegistry()
    ticks: list[float] = []

    @task("t.tick", registry=registry)
    async def tick(ctx: JobContext) -> None:
        ticks.append(ctx.now())

    registry.every("t.tick", lambda settings: settings.jobs.sweep_interval_s)
    app.state.fhir.settings.jobs.sweep_interval_s = 60
    r = InProcessRunner(clock, registry, JobsSettings())
    r.bind(app.state.fhir)
    await r.start()
    try:
        await r.idle()
        for _ in range(3):
            clock.advance(30)
            await r.idle()
        assert ticks == [0.0, 60.0]
    finally:
        await r.close()


def test_back_off_doubles_up_to_the_maximum() -> None:
    assert [backoff_delay(n, 2, 20) for n in (1, 2, 3, 4, 5, 100)] == [2, 4, 8, 16, 20, 20]


async def test_the_post_write_hook_calls_reactions_for_the_type_after_commit(
    app: Any, client: httpx.AsyncClient
) -> None:
    seen: list[tuple[str, str | None, bool, bool]] = []

    @on_write("Basic")
    async def reaction(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        stored = await ctx.repo.read("Basic", outcome.id or "")  # committed before the hook runs
        seen.append((outcome.resource_type, outcome.id, resource is None, stored is not None))

    @on_write("Basic")
    async def broken(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        raise RuntimeError("a failing reaction does not fail the write")

    try:
        r = await client.post("/Basic", json={"resourceType": "Basic", "code": {"text": "x"}})
        assert r.status_code == 201
        bid = r.json()["id"]
        await client.post("/Patient", json={"resourceType": "Patient"})
        assert (await client.delete(f"/Basic/{bid}")).status_code == 204
        assert seen == [("Basic", bid, False, True), ("Basic", bid, True, True)]
    finally:
        REACTIONS._by_type["Basic"].remove(reaction)
        REACTIONS._by_type["Basic"].remove(broken)
    await asyncio.sleep(0)


async def test_a_reaction_is_not_run_for_writes_its_when_test_declines(app: Any, client: httpx.AsyncClient) -> None:
    ran: list[str] = []
    asked: list[str] = []

    def only_named(ctx: JobContext, outcome: WriteOutcome) -> bool:
        asked.append(outcome.resource_type)
        return outcome.resource_type == "Basic"

    @on_write("*", when=only_named)
    async def reaction(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        ran.append(outcome.resource_type)

    try:
        assert (await client.post("/Patient", json={"resourceType": "Patient"})).status_code == 201
        assert (await client.post("/Basic", json={"resourceType": "Basic", "code": {"text": "x"}})).status_code == 201
        assert asked == ["Patient", "Basic"]
        assert ran == ["Basic"]
    finally:
        REACTIONS._by_type["*"].remove(reaction)
    await asyncio.sleep(0)

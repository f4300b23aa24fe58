"""Issue 6: an order's delivery state is on its Task, so nothing is lost when the server stops.  One attempt per
job run, retries spaced by the back-off and capped, a restart resumes a pending order through the sweep (and
the sweep never queues an order twice), an order Task that was never sent is picked up."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from fhir_server import jsonio
from fhir_server.jobs import ManualClock
from fhir_server.settings import LabEndpoint
from fhir_server.storage._meta import format_instant
from hl7_adapters._flags import INBOUND
from hl7_adapters.outbound import _task
from tests.hl7_adapters.conftest import hl7_settings
from tests.hl7_adapters.outbound.test_roundtrip import Lis, _order
from tests.hl7_adapters.outbound.test_roundtrip import _task as task_of


async def settle(app: Any) -> None:
    """Everything due on the (manual) job clock has run."""
    await asyncio.wait_for(app.state.fhir.runner.idle(), 20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running(tmp_path: Path, port: int, clock: ManualClock, **hl7: Any) -> AsyncIterator[
        tuple[Any, httpx.AsyncClient]]:
    from fhir_server.app import create_app

    lab = LabEndpoint(host="127.0.0.1", port=port, receiving_application="LIS", receiving_facility="LAB")
    options: dict[str, Any] = {"order_backoff_s": 10.0, "order_backoff_max_s": 40.0, "order_max_attempts": 4,
                               "ack_timeout_s": 2.0, **hl7}
    app = create_app(hl7_settings(tmp_path, labs={"main": lab}, **options), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as rest:
            await settle(app)
            yield app, rest


def state(task: dict[str, Any]) -> tuple[str, str, int, str | None]:
    return task["status"], task["businessStatus"]["text"], _task.attempts(task), _task.next_attempt(task)


def hl7_pending(app: Any) -> list[float]:
    return [due for due, name in app.state.fhir.runner.pending() if name == "hl7.send_order"]


async def test_retries_are_spaced_by_the_backoff_and_stop_at_the_maximum(tmp_path: Path) -> None:
    clock = ManualClock(time.time())
    t0 = clock.now()
    async with running(tmp_path, free_port(), clock) as (app, rest):  # nothing listens: connection refused
        _, sr_id = await _order(rest)
        await settle(app)
        assert state(await task_of(rest, sr_id))[:3] == ("requested", "retrying", 1)
        assert _task.next_attempt(await task_of(rest, sr_id)) == format_instant(t0 + 10)
        assert hl7_pending(app) == [t0 + 10]  # the next attempt is a queued job, due then
        await app.state.fhir.jobs.enqueue("hl7.orders_sweep", t0 + 100)  # a sweep that sees it due
        await settle(app)
        assert hl7_pending(app) == [t0 + 10]  # the queued retry holds the job key: not queued twice
        clock.advance(9.5)
        await settle(app)
        assert _task.attempts(await task_of(rest, sr_id)) == 1  # not before its time
        expected = [(0.5, 2, 20.0), (20.0, 3, 40.0)]  # 10 s, then 20 s, then capped at 40 s
        for step, attempts, delay in expected:
            clock.advance(step)
            await settle(app)
            task = await task_of(rest, sr_id)
            assert state(task) == ("requested", "retrying", attempts, format_instant(clock.now() + delay))
            assert "no answer" in task["statusReason"]["text"]
        clock.advance(40.0)
        await settle(app)
        task = await task_of(rest, sr_id)
        assert state(task) == ("failed", "not delivered", 4, None)  # FHIR_HL7__ORDER_MAX_ATTEMPTS
        assert hl7_pending(app) == []
        clock.advance(600.0)  # later sweeps leave a finished order alone
        await settle(app)
        assert state(await task_of(rest, sr_id)) == ("failed", "not delivered", 4, None)


async def test_an_order_pending_at_shutdown_is_sent_once_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    clock = ManualClock(time.time())
    async with running(tmp_path, port, clock) as (app, rest):  # the lab is down
        _, sr_id = await _order(rest)
        await settle(app)
        before = await task_of(rest, sr_id)
        assert state(before)[:3] == ("requested", "retrying", 1)
        control_id = _task.output(before, "message-control-id")
        assert control_id is not None
    lis = Lis()
    await lis.server.start("127.0.0.1", port)
    try:
        clock = ManualClock(clock.now() + 5)  # a new process, before the retry is due
        async with running(tmp_path, port, clock) as (app, rest):
            # the job journal queued the pending retry again, due when it was due (not yet); the start-up sweep
            # found the order too, but its job key is held: one job
            assert lis.orders == [] and len(hl7_pending(app)) == 1
            clock.advance(60)  # past its time: sent
            await settle(app)
            task = await task_of(rest, sr_id)
            assert state(task) == ("accepted", "accepted by the lab (AA)", 2, None)
            assert _task.output(task, "ack") == {"type": {"text": "ack"}, "valueString": "AA"}
            (order,) = lis.orders
            orc = order.first("ORC")
            assert orc is not None and orc.value(2) == sr_id
            assert order.control_id == control_id["valueString"]  # the same message, repeated
            for _ in range(3):  # more sweeps, more time: never sent twice
                clock.advance(120)
                await settle(app)
                await app.state.fhir.jobs.enqueue("hl7.orders_sweep")
                await settle(app)
            assert len(lis.orders) == 1
    finally:
        await lis.server.stop(0.1)


async def test_the_sweep_sends_an_order_task_that_was_never_sent(tmp_path: Path) -> None:
    """The process stopped between creating the Task ("queued", no attempt recorded) and sending."""
    lis = Lis()
    await lis.server.start("127.0.0.1", 0)
    try:
        clock = ManualClock(time.time())
        async with running(tmp_path, lis.server.port, clock) as (app, rest):
            fhir = app.state.fhir
            patient = await fhir.resources.create("Patient", jsonio.dumps({"resourceType": "Patient",
                                                                             "name": [{"family": "Curie"}]}))
            flag = INBOUND.set(True)  # written like an inbound message: no order job of its own
            try:
                sr = await fhir.resources.create("ServiceRequest", jsonio.dumps({
                    "resourceType": "ServiceRequest", "status": "active", "intent": "order",
                    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": f"Patient/{patient.id}"}}))
            finally:
                INBOUND.reset(flag)
            await settle(app)
            assert lis.orders == []
            await fhir.resources.create("Task", jsonio.dumps(_task.order_task(sr.id, {}, "main")))
            await fhir.jobs.enqueue("hl7.orders_sweep")
            await settle(app)
            assert len(lis.orders) == 1
            assert state(await task_of(rest, sr.id)) == ("accepted", "accepted by the lab (AA)", 1, None)
    finally:
        await lis.server.stop(0.1)

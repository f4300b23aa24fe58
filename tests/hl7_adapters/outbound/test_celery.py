"""Issue 6 under ``FHIR_JOBS__BACKEND=celery``: a real redis-server and a real ``infirmary worker``.  The API
process only enqueues; the worker sends the order (its first attempt gets no answer, the retry goes through the
queue with an ETA), records the ACK on the Task, and completes the Task when the result comes back."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from fhir_server.settings import JobsSettings, LabEndpoint
from hl7_adapters.mllp.client import MllpClient
from hl7_adapters.outbound import _task
from hl7_adapters.v2 import parse_message
from tests.hl7_adapters.conftest import hl7_settings, msa
from tests.hl7_adapters.outbound.test_roundtrip import Lis, _order
from tests.hl7_adapters.outbound.test_roundtrip import _task as task_of
from tests.workflows.notifications._servers import CeleryWorker, RedisServer


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_an_order_is_sent_and_completed_by_a_celery_worker(tmp_path: Path) -> None:
    from fhir_server.app import create_app
    from fhir_server.jobs.celery_app import create_celery

    lis = Lis(refuse_first=1)  # the first attempt gets no answer
    await lis.server.start("127.0.0.1", 0)
    redis = RedisServer(tmp_path)
    lab = LabEndpoint(host="127.0.0.1", port=lis.server.port, receiving_application="LIS", receiving_facility="LAB")
    base = hl7_settings(tmp_path, labs={"main": lab}, order_backoff_s=0.5, order_max_attempts=3,
                        ack_timeout_s=1.0)
    settings = base.model_copy(update={"jobs": JobsSettings(backend="celery", redis_url=redis.url)})
    env = {**os.environ, "FHIR_DATA_DIR": str(tmp_path), "FHIR_STORAGE__SQLITE_PATH": str(settings.sqlite_file()),
           "FHIR_AUTH__ENABLED": "false", "FHIR_JOBS__BACKEND": "celery", "FHIR_JOBS__REDIS_URL": redis.url,
           "FHIR_HL7__ENABLED": "false", "FHIR_HL7__LABS": f'{{"main": {lab.model_dump_json()}}}',
           "FHIR_HL7__ORDER_BACKOFF_S": "0.5", "FHIR_HL7__ORDER_MAX_ATTEMPTS": "3", "FHIR_HL7__ACK_TIMEOUT_S": "1"}
    worker = CeleryWorker(env, tmp_path / "worker.log")
    try:
        worker.wait_ready(create_celery(settings))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            assert app.state.fhir.runner.pending() == []  # nothing runs in the API process
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as rest:
                _, sr_id = await _order(rest)

                async def status(wanted: str) -> bool:
                    found = (await rest.get(f"Task?focus=ServiceRequest/{sr_id}")).json().get("entry", [])
                    return bool(found) and found[0]["resource"]["status"] == wanted

                assert await eventually(lambda: status("accepted")), (tmp_path / "worker.log").read_text()
                task = await task_of(rest, sr_id)
                assert _task.attempts(task) == 2 and _task.next_attempt(task) is None
                assert _task.output(task, "ack") == {"type": {"text": "ack"}, "valueString": "AA"}
                (order,) = lis.orders
                async with MllpClient("127.0.0.1", app.state.hl7.server.port, timeout_s=10) as client:
                    ack = parse_message(await client.send(lis.result_for(order, "182")))
                assert msa(ack)[0] == "AA", ack.raw
                assert await eventually(lambda: status("completed")), (tmp_path / "worker.log").read_text()
                outputs: dict[str, Any] = {o["type"]["text"]: o for o in (await task_of(rest, sr_id))["output"]}
                assert outputs["result"]["valueReference"]["reference"].startswith("DiagnosticReport/")
                assert len(lis.orders) == 1
    finally:
        worker.stop()
        redis.stop()
        await lis.server.stop(0.1)

"""The outbound order tasks, the sweep that resumes them, and the post-write reactions that start them
(listed in ``fhir_server/jobs/wiring.py``; they run on the configured runner: in-process or Celery).

* ``hl7.send_order(service_request_id)`` — one delivery attempt (``orders.send_order``), job key
  ``hl7-order:<id>``; re-run at the next attempt's time under the same key until the lab answers or the attempts
  are spent;
* ``hl7.complete_orders(diagnostic_report_id)`` — a result completes the order Tasks it is based on;
* ``hl7.orders_sweep(as_of=None)`` — periodic (``FHIR_JOBS__SWEEP_INTERVAL_S``, at start-up too): queues
  ``hl7.send_order`` for every order Task still ``requested`` ("queued"/"retrying") whose next attempt is due by
  ``as_of`` (default now) or that has none recorded, so an order whose retry was lost when a process stopped is
  sent; the job key stops it from being queued twice.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.jobs import TASKS, JobContext, on_write, task
from fhir_server.storage.base import SearchRequest, WriteOutcome
from hl7_adapters._flags import INBOUND
from hl7_adapters.outbound import _task, orders

SWEEP_LIMIT = 1000


def order_key(sr_id: str) -> str:
    return f"hl7-order:{sr_id}"


@task("hl7.send_order")
async def send_order(ctx: JobContext, service_request_id: str) -> None:
    await orders.send_order(ctx, service_request_id)


@task("hl7.complete_orders")
async def complete_orders(ctx: JobContext, diagnostic_report_id: str) -> None:
    await orders.complete_orders(ctx, diagnostic_report_id)


@task("hl7.orders_sweep")
async def orders_sweep(ctx: JobContext, as_of: float | None = None) -> None:
    if not _sending(ctx):
        return
    now = ctx.now() if as_of is None else float(as_of)
    for found in await _pending_tasks(ctx):
        focus = str((found.get("focus") or {}).get("reference", ""))
        if not focus.startswith("ServiceRequest/"):
            continue
        due = _task.next_attempt(found)
        if due is None or orders.epoch_of(due) <= now:
            sr_id = focus.split("/", 1)[1]
            await ctx.queue.enqueue("hl7.send_order", sr_id, key=order_key(sr_id))


async def _pending_tasks(ctx: JobContext) -> list[dict[str, Any]]:
    query = ctx.resources.criteria("Task", f"status=requested&code={_task.TASK_CODE_SYSTEM}|fulfill")
    found: list[dict[str, Any]] = []
    cursor = None
    while len(found) < SWEEP_LIMIT:
        page = await ctx.repo.search(SearchRequest(query, min(200, SWEEP_LIMIT - len(found)), cursor, total=False))
        found.extend(jsonio.loads(s.body) for s in page.matches if s.body is not None and not s.deleted)
        cursor = page.next_cursor
        if cursor is None:
            break
    return [t for t in found if _task.is_pending(t)]


TASKS.every("hl7.orders_sweep", lambda settings: settings.jobs.sweep_interval_s)


def _sending(ctx: JobContext) -> bool:
    settings = ctx.settings.hl7
    return bool(settings.labs) and settings.send_orders


def _new_order(ctx: JobContext, outcome: WriteOutcome) -> bool:
    return outcome.created and _sending(ctx) and not INBOUND.get()


@on_write("ServiceRequest", when=_new_order)
async def on_service_request(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    if outcome.id is None or resource is None or resource.get("status") != "active":
        return
    if orders.is_lab_request(resource) and orders.lab_for(ctx.settings.hl7, resource) is not None:
        await ctx.queue.enqueue("hl7.send_order", outcome.id, key=order_key(outcome.id))


def _result(ctx: JobContext, outcome: WriteOutcome) -> bool:
    return _sending(ctx)


@on_write("DiagnosticReport", when=_result)
async def on_diagnostic_report(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    if outcome.id is None or resource is None or outcome.version is None:
        return
    if any(str(b.get("reference", "")).startswith("ServiceRequest/") for b in resource.get("basedOn", [])):
        await ctx.queue.enqueue("hl7.complete_orders", outcome.id,
                                key=f"hl7-result:{outcome.id}/{outcome.version.version}")

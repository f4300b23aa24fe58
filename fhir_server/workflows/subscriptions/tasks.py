"""The Subscription jobs and the post-write reaction (listed in ``fhir_server/jobs/wiring.py``).

Arguments are ids and numbers: the Subscription, the written resource's type, id and version, when the first
attempt was made (epoch seconds, for the retry age limit) and the attempt number.  Retries are scheduled by the
service itself (age-bounded back-off), so the runner makes one attempt per job.
"""

from __future__ import annotations

from typing import Any

from fhir_server.jobs.context import JobContext
from fhir_server.jobs.hooks import ANY_TYPE, on_write
from fhir_server.jobs.registry import task
from fhir_server.storage.base import WriteOutcome
from fhir_server.workflows.subscriptions.service import HANDSHAKE, NOTIFY, SubscriptionService


def _service(ctx: JobContext) -> SubscriptionService | None:
    service: SubscriptionService | None = getattr(ctx.fhir, "subscriptions", None)
    return service


def _may_notify(ctx: JobContext, outcome: WriteOutcome) -> bool:
    service = _service(ctx)
    return service is not None and service.reacts_to(outcome.resource_type)


@on_write(ANY_TYPE, when=_may_notify)
async def subscription_events(ctx: JobContext, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
    service = _service(ctx)
    if service is not None:
        await service.on_write(ctx.queue, outcome, resource)


@task(NOTIFY, max_attempts=1)
async def notify(ctx: JobContext, sub_id: str, resource_type: str, id: str, version: int, first_try: float,
                 attempt: int) -> None:
    service = _service(ctx)
    if service is not None:
        await service.notify(ctx.queue, sub_id, resource_type, id, version, first_try, attempt)


@task(HANDSHAKE, max_attempts=1)
async def handshake(ctx: JobContext, sub_id: str, first_try: float, attempt: int) -> None:
    service = _service(ctx)
    if service is not None:
        await service.handshake(ctx.queue, sub_id, first_try, attempt)

"""A due CommunicationRequest becomes one Communication per channel (``dispatch``); each is then sent
(``deliver``), retried with back-off on failure, its state kept on the Communication:

* ``preparation``: created, not yet tried; ``in-progress``: an attempt failed, another is coming
  (``statusReason`` says which attempt and why); ``completed``: handed to the next hop (``sent``);
  ``not-done``: given up, opted out since, or refused for good (``statusReason``).
* in-app messages are the Communication itself: ``completed`` at once.
* the CommunicationRequest becomes ``completed`` in the same transaction, or ``revoked`` (with
  ``statusReason``) when the recipient gets nothing (opted out, no usable contact point, unknown recipient).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from fhir_server.errors import PreconditionFailed
from fhir_server.storage.base import StoredVersion
from fhir_server.workflows.notifications import _store, preferences, templates, values
from fhir_server.workflows.notifications._codes import BASE, IN_APP, channel_of, kind_of, medium
from fhir_server.workflows.notifications.channels import DeliveryError, Outgoing, available, channel_for
from fhir_server.workflows.notifications.requests import status_reason

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext

OPEN = ("preparation", "in-progress")


async def recipient_of(ctx: JobContext, resource: dict[str, Any]) -> dict[str, Any] | None:
    """The person a request or message is for (a PractitionerRole's practitioner)."""
    found = await _store.read(ctx, _store.reference_of(resource, "recipient") or "")
    if found is None:
        return None
    person = found[1]
    if person["resourceType"] == "PractitionerRole":
        practitioner = await _store.read(ctx, _store.reference_of(person, "practitioner") or "")
        return practitioner[1] if practitioner else None
    return person if person["resourceType"] in ("Patient", "Practitioner", "RelatedPerson") else None


async def dispatch(ctx: JobContext, request_id: str, as_of: float | None = None) -> list[str]:
    """Turn a due, active CommunicationRequest into Communications; returns the ids to deliver."""
    now = ctx.now() if as_of is None else as_of
    found = await _store.read(ctx, f"CommunicationRequest/{request_id}")
    if found is None:
        return []
    stored, request = found
    due = request.get("occurrenceDateTime")
    if request.get("status") != "active" or (due is not None and _store.epoch_of(due) > now):
        return []
    kind = kind_of(request)
    recipient = await recipient_of(ctx, request)
    if recipient is None or kind is None:
        await _close(ctx, stored, request, "revoked", "unknown-recipient", "the recipient or kind is not known")
        return []
    routes = preferences.routes(recipient, now, available(ctx.settings.notify))
    if not routes:
        await _close(ctx, stored, request, "revoked", "opted-out",
                     "the recipient opted out or has no usable contact point")
        return []
    language = preferences.language(recipient, templates.languages(), ctx.settings.notify.default_language)
    audience = "patient" if recipient["resourceType"] == "Patient" else "practitioner"
    message = templates.render(kind, audience, language, await values.for_request(ctx, request, recipient))
    ops = [_store.plan_create(ctx, _communication(request, route.channel, message, now)) for route in routes]
    request["status"] = "completed"
    ops.append(_store.plan_update(ctx, stored, request))
    try:
        outcomes = await _store.write(ctx, ops)
    except PreconditionFailed:
        return []  # dispatched meanwhile by another worker
    ids = [o.id for o, r in zip(outcomes, routes, strict=False) if o.id and r.channel != IN_APP]
    for comm_id in ids:
        await ctx.queue.enqueue("notifications.deliver", comm_id, key=f"deliver:{comm_id}")
    return ids


def _communication(request: dict[str, Any], channel: str, message: templates.Message, now: float) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Communication", "language": message.language,
                                "basedOn": [{"reference": f"CommunicationRequest/{request['id']}"}]}
    resource["status"] = "completed" if channel == IN_APP else "preparation"
    resource["category"] = request.get("category")
    resource["medium"] = medium(channel)
    for element in ("subject", "about"):
        if request.get(element):
            resource[element] = request[element]
    resource["topic"] = {"text": message.subject}
    if channel == IN_APP:
        resource["sent"] = _store.instant(now)
    resource["recipient"] = request["recipient"]
    resource["payload"] = [{"contentString": message.body}]
    return resource


async def deliver(ctx: JobContext, communication_id: str) -> None:
    """One attempt to send a Communication; raises (to be retried) after recording a retryable failure."""
    found = await _store.read(ctx, f"Communication/{communication_id}")
    if found is None or found[1].get("status") not in OPEN:
        return
    stored, comm = found
    channel = channel_of(comm)
    recipient = await recipient_of(ctx, comm)
    address = preferences.address(recipient, channel, ctx.now()) if recipient and channel else None
    if channel is None or address is None:
        await _close(ctx, stored, comm, "not-done", "opted-out",
                     "the recipient opted out or has no usable contact point any more")
        return
    outgoing = Outgoing(address, str((comm.get("topic") or {}).get("text") or ""),
                        str((comm.get("payload") or [{}])[0].get("contentString") or ""), f"Communication/{comm['id']}")
    try:
        message_id = await channel_for(channel, ctx.settings.notify).send(outgoing)
    except DeliveryError as exc:
        final = exc.permanent or ctx.final_attempt
        text = f"attempt {ctx.attempt} of {ctx.max_attempts} failed: {exc}" + ("" if final else "; will retry")
        await _close(ctx, stored, comm, "not-done" if final else "in-progress", "failed" if final else "retrying",
                     text)
        if not final:
            raise
        return
    comm["sent"] = _store.instant(ctx.now())
    if message_id:
        comm["identifier"] = [{"system": f"{BASE}/sid/{channel}-message", "value": message_id}]
    comm.pop("statusReason", None)
    await _close(ctx, stored, comm, "completed", None, None)


async def _close(ctx: JobContext, stored: StoredVersion, resource: dict[str, Any], status: str,
                 code: str | None, text: str | None) -> None:
    resource["status"] = status
    if code is not None and text is not None:
        resource["statusReason"] = status_reason(code, text)
    with contextlib.suppress(PreconditionFailed):  # changed meanwhile: the newer state wins
        await _store.write(ctx, [_store.plan_update(ctx, stored, resource)])

"""``/fhir/$websocket``: the R4 websocket channel of Subscriptions (docs/subscriptions.md).

The client sends ``bind <id>``; the server answers ``bound <id>`` (or ``error <id> <reason>``) and then sends
``ping <id>`` for each event of that Subscription, and ``heartbeat`` every ``FHIR_SUBSCRIPTIONS__WEBSOCKET_
HEARTBEAT_S`` seconds.  With authorization on, the upgrade request needs the same bearer token as the REST API
(``Authorization`` header; refused with close code 1008 otherwise), and a client may bind only Subscriptions its
token may read.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server import jsonio
from fhir_server.api.context import FhirContext
from fhir_server.auth.audit import RequestInfo
from fhir_server.auth.guard import AccessRecord
from fhir_server.auth.tokens import InvalidToken
from fhir_server.errors import FhirError
from fhir_server.storage.base import Repository
from fhir_server.workflows.subscriptions import SubscriptionService

PATH = "/fhir/$websocket"
POLICY_VIOLATION = 1008


def _base_url(fhir: FhirContext, websocket: WebSocket) -> str:
    if fhir.settings.server.base_url:
        return fhir.settings.server.base_url.rstrip("/")
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return f"{scheme}://{websocket.url.netloc}/fhir"


async def endpoint(websocket: WebSocket) -> None:
    fhir: FhirContext = websocket.app.state.fhir
    service: SubscriptionService = fhir.subscriptions
    security = fhir.security
    repo: Repository = fhir.repo
    context: Any = None
    record = AccessRecord()
    if security is not None and security.enabled:
        try:
            context = security.authenticate(websocket.headers.get("authorization"), _base_url(fhir, websocket))
        except InvalidToken:
            await websocket.close(code=POLICY_VIOLATION)
            return
        repo = security.scoped(security.policy(context), record)
    await websocket.accept()
    heartbeat = asyncio.get_running_loop().create_task(_heartbeat(websocket, service.settings.websocket_heartbeat_s))
    try:
        while True:
            message = (await websocket.receive_text()).strip()
            reply = await _bind(service, repo, websocket, message)
            if context is not None:
                client = websocket.client
                await security.audit(context, record, RequestInfo("GET", "$websocket", "", 200,
                                                                  client.host if client else None))
                record = AccessRecord()
                repo = security.scoped(security.policy(context), record)
            await websocket.send_text(reply)
    except WebSocketDisconnect:
        pass
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        service.hub.unbind(websocket)


async def _bind(service: SubscriptionService, repo: Repository, websocket: WebSocket, message: str) -> str:
    verb, _, sub_id = message.partition(" ")
    sub_id = sub_id.strip()
    if verb != "bind" or not sub_id:
        return "error expected 'bind <Subscription id>'"
    try:
        stored = await repo.read("Subscription", sub_id)
    except FhirError:
        stored = None
    if stored is None or stored.body is None:
        return f"error {sub_id} no such Subscription"
    definition = service.definition(jsonio.loads(stored.body), stored.version)
    if definition is None or definition.channel.type != "websocket":
        return f"error {sub_id} not an active websocket Subscription"
    service.hub.bind(sub_id, websocket)
    return f"bound {sub_id}"


async def _heartbeat(websocket: WebSocket, every_s: float) -> None:
    if every_s <= 0:
        return
    while True:
        await asyncio.sleep(every_s)
        try:
            await websocket.send_text("heartbeat")
        except Exception:
            return

"""The inbound pipeline: bytes → parse → map → one transaction through the services → ACK.

* **AA only after commit.** The mapped transaction Bundle and the message's log entry (``message_log``) go to
  ``BundleService.process`` together, as one atomic write through the same services as ``POST /fhir``; the ACK
  is built and sent only when that returned.
* **AE** (with ERR naming segment and field) for a message that parses but cannot be applied: ``MappingError``,
  or a ``FhirError`` from the transaction (validation, an unknown patient, …) — nothing of it is written but its
  log entry (its own write).
* **AR** for unparseable input, an unsupported version, processing id, message type or trigger event — logged
  the same way; and for a failure of the store (ERR code 207: the sender should retry; nothing was written).
* **Duplicates**: an applied message's log entry carries ``sender^control id^content digest`` as identifier and
  is written with ``ifNoneExist``; a message whose key is already logged is answered with the ACK(s) sent the
  first time and nothing is written. Messages of one key are handled one at a time in this process (across
  worker processes two simultaneous copies may both be applied — idempotently — with one log entry).
* **Enhanced mode** (MSH-15/MSH-16 valued): an accept ACK (CA/CE/CR) when MSH-15 asks for it (AL, ER, SU, NE),
  then the application ACK when MSH-16 asks for it; both are answered on the same connection, accept ACK first.
  CA means the message is stored (applied, or logged with an AE).
* **Identity and audit**: with authorization on, the listener writes as the system identity
  ``FHIR_HL7__IDENTITY`` with ``FHIR_HL7__SCOPES`` on a scoped repository, and every message leaves AuditEvents
  like a REST transaction, with the MLLP sender (``APP^FACILITY`` and address) as a second agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.auth.audit import RequestInfo
from fhir_server.auth.guard import AccessRecord
from fhir_server.auth.policy import AccessPolicy
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.errors import FhirError
from fhir_server.settings import Hl7Settings
from hl7_adapters import message_log
from hl7_adapters._errors import fhir_error_detail, header_problem, mapping_error_detail, parse_error_detail
from hl7_adapters._flags import INBOUND
from hl7_adapters.mappings import MappingError, UnsupportedMessage, map_message
from hl7_adapters.mappings.merge import complete as complete_merge
from hl7_adapters.mllp.server import Peer
from hl7_adapters.v2 import ack
from hl7_adapters.v2.ack import ErrorDetail, build_ack
from hl7_adapters.v2.message import Message
from hl7_adapters.v2.parser import ParseError, parse_header, parse_message

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext, Services

log = logging.getLogger("hl7_adapters.inbound")

SENDER_SYSTEM = "https://infirmary.example.org/fhir/sid/hl7v2-sender"
_ACCEPT = {"AA": "CA", "AE": "CA", "AR": "CR"}


@dataclass
class Result:
    """What happened to one message."""

    code: str  # AA, AE, AR (the application outcome)
    text: str = ""
    errors: list[ErrorDetail] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    duplicate: bool = False
    stored: bool = True  # the data or at least the log entry committed (False: the store failed)
    response: dict[str, Any] | None = None  # the transaction-response Bundle of an applied message


def ack_frames(msg: Message | None, code: str, text: str, errors: Sequence[ErrorDetail],
               accept_code: str | None = None) -> list[bytes]:
    """The ACKs to answer with, in order, as the message's acknowledgement mode asks."""
    app = build_ack(msg, code, text, errors).encode()
    accept_mode = msg.accept_ack_type if msg is not None else None
    app_mode = msg.application_ack_type if msg is not None else None
    if accept_mode is None and app_mode is None:
        return [app]
    accept = accept_code or _ACCEPT[code]
    out: list[bytes] = []
    if _wanted(accept_mode or "AL", accept == "CA"):
        accept_errors = errors if accept != "CA" else ()
        out.append(build_ack(msg, accept, text if accept != "CA" else "", accept_errors).encode())
    if _wanted(app_mode or "AL", code == "AA"):
        out.append(app)
    return out


def _wanted(mode: str, success: bool) -> bool:
    """HL7 table 0155: AL always, NE never, ER only on error, SU only on success."""
    return mode == "AL" or (mode == "ER" and not success) or (mode == "SU" and success)


class InboundPipeline:
    def __init__(self, fhir: FhirContext, settings: Hl7Settings) -> None:
        self.fhir = fhir
        self.settings = settings
        server = fhir.settings.server
        self.base_url = server.base_url or f"http://{server.host}:{server.port}/fhir"
        security = fhir.security
        self.security = security if security is not None and security.enabled else None
        self.context: AccessContext | None = None
        self.policy: AccessPolicy | None = None
        if self.security is not None:
            self.context = AccessContext(
                subject=settings.identity, client_id=settings.identity,
                scopes=ScopeSet.parse(settings.scopes, self.security.resource_types), kind="system",
                token_id=f"hl7:{settings.identity}", issued_at=0, expires_at=0)
            self.policy = AccessPolicy(self.context, self.security.linked)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per sender^control id: (lock, users)

    async def handle(self, raw: bytes, peer: Peer) -> list[bytes]:
        """The MLLP handler: the ACK frames for one message."""
        return (await self.process(raw, peer)).acks

    async def process(self, raw: bytes, peer: Peer | None = None, *, received: float | None = None,
                      force: bool = False) -> Result:
        """Apply one message. ``force`` (replay) re-applies a message whose control id was already applied."""
        received = time.time() if received is None else received
        where = f"{peer.address}:{peer.port}" if peer is not None else "replay"
        try:
            msg = parse_message(raw)
        except ParseError as exc:
            detail = parse_error_detail(exc)
            return await self._rejected(parse_header(raw), raw, "AR", f"unparseable: {exc.reason}", [detail],
                                        where, received, peer)
        problem = header_problem(msg)
        if problem is not None:
            return await self._rejected(msg, raw, "AR", problem.text, [problem], where, received, peer)
        key = message_log.applied_key(msg)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._apply(msg, raw, where, received, peer, force)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    # -- applying --------------------------------------------------------------------------------------------

    async def _apply(self, msg: Message, raw: bytes, where: str, received: float, peer: Peer | None,
                     force: bool = False) -> Result:
        record = AccessRecord()
        services = self._services(record)
        previous = None if force else await self._find_applied(services, msg)
        if previous is not None:
            log.info("HL7: duplicate %s^%s control id from %s answered again", msg.message_type,
                     msg.trigger_event, where)
            return Result("AA", "duplicate", acks=previous.acks or ack_frames(msg, "AA", "", []), duplicate=True)
        try:
            bundle = map_message(msg)
            await complete_merge(msg, bundle, services, self.base_url)  # A40: what a pure mapping cannot know
        except UnsupportedMessage as exc:
            code = ack.UNSUPPORTED_EVENT_CODE if msg.message_type in _types_supported() else \
                ack.UNSUPPORTED_MESSAGE_TYPE
            detail = ErrorDetail(code, exc.reason, "MSH", 1, 9)
            return await self._rejected(msg, raw, "AR", exc.reason, [detail], where, received, peer)
        except MappingError as exc:
            detail = mapping_error_detail(msg, exc)
            return await self._rejected(msg, raw, "AE", detail.text, [detail], where, received, peer)
        except Exception as exc:  # a mapping bug must not take the listener down
            log.exception("HL7: mapping %s^%s failed unexpectedly", msg.message_type, msg.trigger_event)
            detail = ErrorDetail(ack.APPLICATION_INTERNAL_ERROR, f"mapping failed: {type(exc).__name__}")
            return await self._rejected(msg, raw, "AE", detail.text, [detail], where, received, peer)
        acks = ack_frames(msg, "AA", "", [])
        entry = message_log.entry(msg, raw, outcome="AA", text="applied", acks=acks, peer=where,
                                  received=received)
        entries = bundle.setdefault("entry", [])
        entries.append({"fullUrl": "urn:uuid:hl7v2-message-log", "resource": entry,
                        "request": {"method": "POST", "url": "Basic",
                                    "ifNoneExist": message_log.applied_query(msg)}})
        token = INBOUND.set(True)
        try:
            response = await services.bundles.process_bundle(jsonio.plain(bundle), base_url=self.base_url)
        except FhirError as exc:
            entries.pop()
            await self._audit(record, exc.status if exc.status >= 500 else 400, msg, peer)
            if exc.status >= 500:
                return await self._store_failed(msg, raw, where, received, peer, type(exc).__name__)
            detail = fhir_error_detail(msg, bundle, exc)
            return await self._rejected(msg, raw, "AE", detail.text, [detail], where, received, peer)
        except Exception as exc:  # a driver error that escaped the repository
            entries.pop()
            return await self._store_failed(msg, raw, where, received, peer, type(exc).__name__)
        finally:
            INBOUND.reset(token)
        await self._audit(record, 200, msg, peer)
        if response["entry"][-1]["response"]["status"].startswith("200") and not force:
            log.warning("HL7: %s^%s from %s was applied concurrently elsewhere (duplicate control id)",
                        msg.message_type, msg.trigger_event, where)
        return Result("AA", acks=acks, response=response)

    async def _store_failed(self, msg: Message, raw: bytes, where: str, received: float, peer: Peer | None,
                            what: str) -> Result:
        """The store failed while applying: nothing was written; AR (enhanced mode: CE) with ERR 207, so that
        the sender sends the message again."""
        log.error("HL7: the store failed while applying %s^%s from %s (%s); answered AR, nothing applied",
                  msg.message_type, msg.trigger_event, where, what)
        detail = ErrorDetail(ack.APPLICATION_INTERNAL_ERROR,
                             "the message could not be stored; nothing was applied, send it again")
        result = await self._rejected(msg, raw, "AR", detail.text, [detail], where, received, peer,
                                      accept_code="CE")
        result.stored = False
        return result

    async def _rejected(self, msg: Message | None, raw: bytes, code: str, text: str,
                        errors: list[ErrorDetail], where: str, received: float, peer: Peer | None,
                        accept_code: str | None = None) -> Result:
        """Log a message that was not applied (its own write) and build its AE/AR."""
        frames = ack_frames(msg, code, text, errors, accept_code)
        resource = message_log.entry(msg, raw, outcome=code, text=text, acks=frames, peer=where,
                                     received=received)
        record = AccessRecord()
        stored = True
        try:
            await self._services(record).resources.create("Basic", jsonio.dumps(resource))
        except Exception as exc:
            stored = False
            log.error("HL7: could not log a rejected message (%s)", type(exc).__name__)
        log.info("HL7: message from %s answered %s: %s", where, code, errors[0].code if errors else "")
        return Result(code, text, errors, frames, stored=stored)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _services(self, record: AccessRecord) -> Services:
        if self.security is None or self.policy is None:
            return self.fhir.unscoped()
        return self.fhir.services_for(self.security.scoped(self.policy, record))

    async def _find_applied(self, services: Services, msg: Message) -> message_log.LogRecord | None:
        found = await services.resources.find_one("Basic", message_log.applied_query(msg))
        return None if found is None else message_log.read_record(found[1])

    async def _audit(self, record: AccessRecord, status: int, msg: Message, peer: Peer | None) -> None:
        if self.security is None or self.context is None:
            return
        info = RequestInfo("POST", "", "", status, peer.address if peer else None)
        record.interaction = "transaction"
        sender: dict[str, Any] = {"type": {"text": "HL7 v2 sending application"},
                  "who": {"identifier": {"system": SENDER_SYSTEM, "value": message_log.sender_of(msg)}},
                  "requestor": False}
        if peer is not None:
            sender["network"] = {"address": peer.address, "type": "2"}
        # the short request line: the audit writer process builds the events (as for an API request)
        await self.security.audit_writer.submit_request(self.context, record, info, False, self.security.linked,
                                                        extra_agents=(sender,))


def _types_supported() -> set[str]:
    from hl7_adapters.mappings import supported

    return {t for t, _ in supported()}

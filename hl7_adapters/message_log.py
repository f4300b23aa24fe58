"""The HL7 v2 message log: every received message, raw, with its outcome, as a profiled ``Basic`` resource.

One ``Basic`` per received message (profile ``https://infirmary.example.org/fhir/StructureDefinition/hl7v2-message``):

* ``code``: ``hl7v2-message`` (:data:`CODE_SYSTEM`) plus the outcome (``AA``, ``AE``, ``AR``) in the HL7 table 0008
  system, so ``Basic?code=http://terminology.hl7.org/CodeSystem/v2-0008|AE`` lists the failed messages;
* ``identifier``: ``APP^FACILITY^CONTROLID`` in :data:`CONTROL_SYSTEM` (to search by), and for an applied
  message the idempotency key ``APP^FACILITY^CONTROLID^DIGEST`` (digest of the content without MSH-7) in
  :data:`APPLIED_SYSTEM`, written in the same transaction as the message's data (``ifNoneExist``), so the data
  and its log entry commit together; a rejected message gets a unique identifier in :data:`REJECTED_SYSTEM`
  instead (the sender may send a corrected message with the same control id);
* ``created``: the day received; extensions: the received instant, sender, peer address, message type, trigger
  event, version, control id, outcome text, the raw message and the ACK(s) sent (base64, since v2 text may hold
  control characters that a FHIR string may not).

Administrators search them like any resource (``Basic?code=…|hl7v2-message&created=ge2025-01-01``);
``infirmary hl7 replay`` re-applies them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.storage._meta import format_instant
from hl7_adapters.v2.message import Message

PROFILE = "https://infirmary.example.org/fhir/StructureDefinition/hl7v2-message"
CODE_SYSTEM = "https://infirmary.example.org/fhir/CodeSystem/hl7v2"
ACK_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0008"
APPLIED_SYSTEM = "https://infirmary.example.org/fhir/sid/hl7v2-message"
REJECTED_SYSTEM = "https://infirmary.example.org/fhir/sid/hl7v2-rejected-message"
CONTROL_SYSTEM = "https://infirmary.example.org/fhir/sid/hl7v2-control-id"
EXT = "https://infirmary.example.org/fhir/StructureDefinition/hl7v2-message-"
LOG_CODE = "hl7v2-message"


@dataclass(frozen=True)
class LogRecord:
    """A message log entry read back (for duplicates and replay)."""

    id: str
    raw: bytes
    outcome: str
    acks: list[bytes]
    sender: str
    peer: str
    received: str


def sender_of(msg: Message) -> str:
    """``APP^FACILITY`` of MSH-3/MSH-4 (first components), the sender part of the idempotency key."""
    return f"{msg.sending_application}^{msg.sending_facility}"


def content_digest(msg: Message) -> str:
    """A digest of the message without MSH-7 (senders may re-stamp a retransmission): 16 hex characters."""
    d = msg.delimiters.field
    parts = msg.msh.raw.split(d)
    head = d.join(parts[:6] + parts[7:])
    body = "\r".join(seg.raw for seg in msg.segments[1:])
    return hashlib.sha256(f"{head}\r{body}".encode()).hexdigest()[:16]


def control_key(msg: Message) -> str:
    """``APP^FACILITY^CONTROLID``: what administrators search by (``identifier`` in :data:`CONTROL_SYSTEM`)."""
    return f"{sender_of(msg)}^{msg.control_id}"


@functools.lru_cache(maxsize=64)  # a message's key is asked for several times while it is processed
def applied_key(msg: Message) -> str:
    """The idempotency key: sender, control id and content digest. A retransmission (same control id, same
    content) is a duplicate; a reused control id with other content is a new message."""
    return f"{control_key(msg)}^{content_digest(msg)}"


def _escape_token(value: str) -> str:
    """A token search value with the FHIR search special characters escaped."""
    for ch in ("\\", "|", ",", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


def applied_query(msg: Message) -> str:
    """The search criteria (unencoded) of a message's applied entry: for ``ifNoneExist`` and the duplicate check."""
    from urllib.parse import quote

    return f"identifier={quote(APPLIED_SYSTEM, safe='')}|{quote(_escape_token(applied_key(msg)), safe='')}"


def entry(msg: Message | None, raw: bytes, *, outcome: str, text: str, acks: list[bytes], peer: str,
          received: float, sender: str | None = None) -> dict[str, Any]:
    """The Basic resource for one received message (``msg`` None: it could not be parsed)."""
    ext: list[dict[str, Any]] = [
        {"url": EXT + "received", "valueInstant": format_instant(received)},
        {"url": EXT + "peer", "valueString": peer or "local"},
    ]
    who = sender or (sender_of(msg) if msg is not None else "")
    if who.strip("^"):
        ext.append({"url": EXT + "sender", "valueString": who})
    if msg is not None:
        for name, value in (("type", msg.message_type), ("event", msg.trigger_event), ("version", msg.version),
                            ("control-id", msg.control_id)):
            if value.strip():
                ext.append({"url": EXT + name, "valueString": value.strip()})
    if text.strip():
        ext.append({"url": EXT + "outcome-text", "valueString": text.strip()})
    ext.append({"url": EXT + "raw", "valueBase64Binary": base64.b64encode(raw).decode()})
    ext.extend({"url": EXT + "ack", "valueBase64Binary": base64.b64encode(a).decode()} for a in acks)
    if outcome == "AA" and msg is not None:
        identifiers = [{"system": APPLIED_SYSTEM, "value": applied_key(msg)}]
    else:
        identifiers = [{"system": REJECTED_SYSTEM, "value": str(uuid.uuid4())}]
    if msg is not None and msg.control_id.strip():
        identifiers.append({"system": CONTROL_SYSTEM, "value": control_key(msg)})
    return {
        "resourceType": "Basic",
        "meta": {"profile": [PROFILE]},
        "identifier": identifiers,
        "code": {"coding": [{"system": CODE_SYSTEM, "code": LOG_CODE, "display": "HL7 v2 message"},
                            {"system": ACK_CODE_SYSTEM, "code": outcome}]},
        "created": time.strftime("%Y-%m-%d", time.gmtime(received)),
        "extension": ext,
    }


def read_record(resource: dict[str, Any]) -> LogRecord:
    values: dict[str, list[Any]] = {}
    for ext in resource.get("extension", []):
        url = str(ext.get("url", ""))
        if url.startswith(EXT):
            value = next((v for k, v in ext.items() if k.startswith("value")), None)
            values.setdefault(url[len(EXT):], []).append(value)
    outcome = next((c.get("code", "") for c in resource.get("code", {}).get("coding", [])
                    if c.get("system") == ACK_CODE_SYSTEM), "")
    return LogRecord(
        id=str(resource.get("id", "")),
        raw=base64.b64decode(values.get("raw", [""])[0] or ""),
        outcome=str(outcome),
        acks=[base64.b64decode(a) for a in values.get("ack", [])],
        sender=str((values.get("sender") or [""])[0]),
        peer=str((values.get("peer") or [""])[0]),
        received=str((values.get("received") or [""])[0]),
    )

"""Building the transaction Bundle of one message: deterministic fullUrls, conditional writes, derived ids.

Every entry is keyed by what the message says about the resource (an identifier), never by a random id, so that
re-sending the same message — or a later message about the same thing — updates instead of duplicating:

* ``put``: conditional update ``PUT Type?identifier=system|value`` (created when absent, replaced when present);
* ``ensure``: conditional create ``POST Type`` with ``ifNoneExist: identifier=system|value`` (left alone when
  present — used for the patient of a result or an order, whose demographics belong to ADT);
* references between entries use the entries' ``urn:uuid:`` fullUrls, which are UUIDv5 of the message control id
  and the key, so a replayed message produces the identical Bundle.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._types import JSON, hd_system, message_offset, token
from hl7_adapters.v2.message import Message, Segment

_NAMESPACE = uuid.UUID("6f1c4f0e-7a53-5b8e-9a43-3f0e1d2c8b71")
DERIVED_SYSTEM = "urn:infirmary:hl7v2:derived"
MESSAGE_SYSTEM = "urn:infirmary:hl7v2:message"


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without building UUID objects (on the hot path of every message)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Builder:
    """Collects the entries of one message's transaction Bundle."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.offset = message_offset(msg.msh)
        reps = msg.msh.field(4).repetitions or msg.msh.field(3).repetitions
        self.sender_system = hd_system(reps[0]) if reps else None
        app = msg.msh.field(3).repetitions
        self.application_system = hd_system(app[0]) if app else self.sender_system
        receiver = msg.msh.field(5).repetitions
        self.receiver_system = hd_system(receiver[0]) if receiver else None
        self.entries: list[JSON] = []
        self._by_url: dict[str, JSON] = {}
        self._urls: dict[str, str] = {}

    def required(self, name: str, what: str) -> list[Segment]:
        """Every ``name`` segment of the message; a MappingError when there is none (``what`` says what one
        is, e.g. ``vaccine administration``)."""
        found = self.msg.all(name)
        if not found:
            raise MappingError(name, -1, None, f"{self.msg.message_type}^{self.msg.trigger_event} needs at least "
                                               f"one {name} ({what})")
        return found

    # -- keys --------------------------------------------------------------------------------------------------

    def full_url(self, key: str) -> str:
        url = self._urls.get(key)
        if url is None:
            name = f"{self.msg.sending_application}|{self.msg.control_id}|{key}"
            url = self._urls[key] = f"urn:uuid:{uuid5(name)}"
        return url

    @staticmethod
    def derived(*parts: str) -> JSON:
        """An identifier derived from stable parts of the message (patient, codes, set ids): same parts, same
        identifier, whatever message carries them."""
        return {"system": DERIVED_SYSTEM, "value": uuid5("\x1f".join(parts))}

    # -- entries -----------------------------------------------------------------------------------------------

    def put(self, resource: JSON, identifier: JSON, key: str, *, query: str | None = None) -> str:
        """Conditional update of ``resource`` matched by ``identifier`` (or the search ``query``); returns its
        fullUrl."""
        rtype = resource["resourceType"]
        return self._add(key, {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{rtype}?{query or 'identifier=' + token(identifier)}"},
        })

    def ensure(self, resource: JSON, identifier: JSON, key: str, *, query: str | None = None) -> str:
        """Conditional create of ``resource`` (kept as it is when one with ``identifier`` — or matching the search
        ``query`` — exists)."""
        rtype = resource["resourceType"]
        return self._add(key, {
            "resource": resource,
            "request": {"method": "POST", "url": rtype,
                        "ifNoneExist": query or f"identifier={token(identifier)}"},
        })

    def patch(self, rtype: str, identifier: JSON, parameters: JSON, key: str) -> str:
        """Conditional FHIRPath Patch of the one ``rtype`` with ``identifier`` (it must exist)."""
        return self._add(key, {
            "resource": parameters,
            "request": {"method": "PATCH", "url": f"{rtype}?identifier={token(identifier)}"},
        })

    def _add(self, key: str, entry: JSON) -> str:
        url = self.full_url(key)
        if url in self._by_url:
            self._by_url[url].update(entry)
            return url
        entry = {"fullUrl": url, **entry}
        self._by_url[url] = entry
        self.entries.append(entry)
        return url

    def has(self, key: str) -> bool:
        return self.full_url(key) in self._by_url

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "meta": {"tag": [{"system": MESSAGE_SYSTEM, "code": f"{self.msg.message_type}^{self.msg.trigger_event}"}]},
            "entry": self.entries,
        }


def ref(url: str, display: str | None = None) -> JSON:
    out: JSON = {"reference": url}
    if display:
        out["display"] = display
    return out

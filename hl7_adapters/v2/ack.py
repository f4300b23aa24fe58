"""ACK building: original mode (AA/AE/AR) and enhanced mode accept acknowledgements (CA/CE/CR).

Built by hand rather than with hl7apy: an ACK is three fixed segments, and building it through hl7apy's element
tree costs about a millisecond per message on the hot path for no extra safety (the fields are copied from the
incoming MSH or are codes from HL7 tables). hl7apy validates the outbound orders instead (``outbound/``).

The ACK answers with the delimiters and version of the incoming message and swaps sender and receiver. ERR is
written the v2.5+ way (ERR-2 location ``segment^sequence^field^^component``, ERR-3 HL7 error code from table
0357, ERR-4 severity, ERR-8 user message) and, for v2.3/v2.4 messages, the older ERR-1
``segment^sequence^field^code&text&HL70357``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hl7_adapters.v2._delimiters import DEFAULT, Delimiters
from hl7_adapters.v2._escape import encode
from hl7_adapters.v2.message import Message

# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"

_CODE_TEXT = {
    "0": "Message accepted",
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

_counter = itertools.count(1)
_PREFIX = f"{os.getpid() % 65536:04x}"


@dataclass(frozen=True)
class ErrorDetail:
    """One ERR segment: where (segment, its 1-based occurrence, field, component), what (table 0357) and why."""

    code: str
    text: str
    segment: str | None = None
    sequence: int | None = None
    field: int | None = None
    component: int | None = None
    severity: str = "E"  # E error, W warning, I information

    @property
    def location(self) -> str:
        """``OBX[2]-5.1`` style, for logs and MSA-3."""
        if not self.segment:
            return ""
        where = self.segment + (f"[{self.sequence}]" if self.sequence and self.sequence > 1 else "")
        if self.field:
            where += f"-{self.field}" + (f".{self.component}" if self.component else "")
        return where


def segment_sequence(msg: Message, segment_index: int) -> int | None:
    """The 1-based occurrence number (ERL-2) of the segment at ``segment_index``."""
    if not 0 <= segment_index < len(msg.segments):
        return None
    name = msg.segments[segment_index].name
    return sum(1 for seg in msg.segments[: segment_index + 1] if seg.name == name)


def new_control_id() -> str:
    """A control id for a message this process sends: unique per process and time, 18 characters (MSH-10
    allows 20 in v2.5)."""
    return f"{int(time.time()):08x}{_PREFIX}{next(_counter) % 1_000_000:06d}"


def hl7_timestamp(when: float | None = None) -> str:
    t = time.gmtime(time.time() if when is None else when)
    return time.strftime("%Y%m%d%H%M%S", t) + "+0000"


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def build_ack(
    msg: Message | None,
    code: str,
    text: str = "",
    errors: Sequence[ErrorDetail] = (),
    *,
    control_id: str | None = None,
    when: float | None = None,
) -> str:
    """An ACK for ``msg`` (None: the message was unreadable; the ACK then has empty addressing).

    ``code`` is AA/AE/AR (application ACK) or CA/CE/CR (enhanced-mode accept ACK). Segments end with ``\\r``.
    """
    d = msg.delimiters if msg is not None else DEFAULT
    f = d.field
    if msg is not None:
        m = msg.msh
        addressing = [m.field(5).raw, m.field(6).raw, m.field(3).raw, m.field(4).raw]
        trigger, proc, version = msg.trigger_event, m.field(11).raw or "P", m.field(12).raw or "2.5"
        ref = m.field(10).raw
    else:
        addressing, trigger, proc, version, ref = ["", "", "", ""], "", "P", "2.5", ""
    msg_type = "ACK" + (d.component + encode(trigger, d) if trigger else "")
    if trigger and version_tuple(version) >= (2, 4):
        msg_type += d.component + "ACK"
    msh = f.join(["MSH", d.encoding_characters, *addressing, hl7_timestamp(when), "", msg_type,
                  control_id or new_control_id(), proc, version])
    msa = f.join(["MSA", code, ref, encode(text[:80], d)]) if text else f.join(["MSA", code, ref])
    segments = [msh, msa]
    legacy = bool(version_tuple(version)) and version_tuple(version) < (2, 5)
    segments.extend(_err(e, d, legacy) for e in errors)
    return "\r".join(segments) + "\r"


def _err(e: ErrorDetail, d: Delimiters, legacy: bool) -> str:
    c, s, f = d.component, d.subcomponent, d.field
    location = [e.segment or "", str(e.sequence or ""), str(e.field or "")]
    code_text = encode(_CODE_TEXT.get(e.code, e.text), d)
    if legacy:  # v2.3/v2.4: ERR-1 ELD segment^sequence^field^code&text&table
        eld = c.join([*location, s.join([e.code, code_text, "HL70357"])]).rstrip(c)
        return f"ERR{f}{eld}"
    erl = c.join([*location, "", str(e.component or "")]).rstrip(c)
    fields = ["ERR", "", erl, c.join([e.code, code_text, "HL70357"]), e.severity, "", "", "", encode(e.text, d)]
    return f.join(fields)

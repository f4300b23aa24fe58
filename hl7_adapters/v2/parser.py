"""A hand-rolled ER7 (pipe-and-hat) parser for HL7 v2.3 to v2.8.

Why not hl7apy's parser: it builds a validated element tree for every field of every segment,
which costs milliseconds per message; the MLLP hot path must acknowledge hundreds of ORU^R01
per second on two cores. This parser only checks the envelope (MSH, delimiters, segment names)
and splits segments; fields are split and escape sequences decoded lazily (see ``message``).

Segment terminators ``\\r``, ``\\n`` and ``\\r\\n`` are accepted, blank lines are skipped.
Bytes are decoded as UTF-8, falling back to cp1252/latin-1 for legacy 8-bit feeds.
"""

from __future__ import annotations

from hl7_adapters.v2._delimiters import Delimiters
from hl7_adapters.v2.message import Message, Segment

_MAX_SEGMENTS = 100_000


class ParseError(ValueError):
    """The input is not an HL7 v2 message; ``segment``/``field`` locate the problem when known."""

    def __init__(self, reason: str, segment: str | None = None, field: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segment = segment
        self.field = field


def decode_bytes(raw: bytes) -> str:
    """Message bytes to text: UTF-8, else cp1252, else latin-1 (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def parse_delimiters(header: str) -> Delimiters:
    """Delimiters from the start of an MSH/FHS/BHS segment; raises ParseError if invalid."""
    if len(header) < 8:
        raise ParseError("MSH segment too short to declare its delimiters", "MSH", 2)
    sep = header[3]
    end = header.find(sep, 4)
    enc = header[4:end] if end >= 0 else header[4:]
    if not 4 <= len(enc) <= 5:
        raise ParseError("MSH-2 must hold 4 or 5 encoding characters", "MSH", 2)
    chars = sep + enc
    if len(set(chars)) != len(chars) or any(c.isalnum() or c.isspace() for c in chars):
        raise ParseError("delimiters must be distinct, non-alphanumeric, non-blank characters", "MSH", 1)
    return Delimiters(sep, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else "")


def _lines(text: str) -> list[str]:
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [line for line in text.split("\r") if line.strip()]


def _check_name(line: str, d: Delimiters) -> None:
    name = line[:3]
    if len(name) < 3 or not (name.isascii() and name.isalnum() and name.upper() == name):
        raise ParseError(f"invalid segment name {name!r}", name or None, None)
    if len(line) > 3 and line[3] != d.field:
        raise ParseError(f"segment {name} is not followed by the field separator", name, None)


def parse_message(raw: bytes | str) -> Message:
    """Parse one message. Raises ParseError for input that is not a well-formed HL7 v2 message."""
    text = decode_bytes(raw) if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff \t\r\n\x0b").rstrip("\x1c\r\n")
    lines = _lines(text)
    if not lines:
        raise ParseError("empty message")
    if not lines[0].startswith("MSH"):
        raise ParseError("a message must start with an MSH segment", lines[0][:3] or None)
    d = parse_delimiters(lines[0])
    if len(lines) > _MAX_SEGMENTS:
        raise ParseError(f"more than {_MAX_SEGMENTS} segments")
    segments: list[Segment] = []
    for i, line in enumerate(lines):
        _check_name(line, d)
        segments.append(Segment(line, i, d))
    msg = Message(segments, d, text)
    if not msg.message_type:
        raise ParseError("MSH-9 (message type) is required", "MSH", 9)
    return msg


def parse_header(raw: bytes | str) -> Message | None:
    """Best effort: just the MSH of ``raw`` (to address an AR for an unparseable message), or None."""
    text = decode_bytes(raw) if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff \t\r\n\x0b")
    line = _lines(text[:4096])[:1]
    if not line or not line[0].startswith("MSH"):
        return None
    if len(text) > 4096 and len(line[0]) >= 4000:
        return None
    try:
        d = parse_delimiters(line[0])
    except ParseError:
        return None
    return Message([Segment(line[0], 0, d)], d, line[0])

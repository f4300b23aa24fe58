"""HL7 v2 ER7 parsing, escape handling and ACK building (the fast path of the MLLP listener)."""

from hl7_adapters.v2._delimiters import DEFAULT, Delimiters
from hl7_adapters.v2.message import Field, Message, Repetition, Segment
from hl7_adapters.v2.parser import ParseError, parse_header, parse_message

__all__ = [
    "DEFAULT",
    "Delimiters",
    "Field",
    "Message",
    "ParseError",
    "Repetition",
    "Segment",
    "parse_header",
    "parse_message",
]

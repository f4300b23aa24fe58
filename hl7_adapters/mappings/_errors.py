"""The two failures a mapping can report: the message type is not handled (AR), or its content is wrong (AE)."""

from __future__ import annotations


class UnsupportedMessage(Exception):
    """The message type, trigger event or version is not mapped (acknowledged with AR)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MappingError(Exception):
    """The message parses but cannot be applied (acknowledged with AE and an ERR segment).

    ``segment_index`` is the segment's position in the message (0 = MSH), or -1 when a required segment is
    missing; ``field``/``component`` are HL7 numbers (PID-3.1 is field 3, component 1), None when the whole
    segment (or field) is meant.
    """

    def __init__(
        self, segment: str, segment_index: int, field: int | None, reason: str, component: int | None = None
    ) -> None:
        location = segment if field is None else f"{segment}-{field}" + (f".{component}" if component else "")
        super().__init__(f"{location}: {reason}")
        self.segment = segment
        self.segment_index = segment_index
        self.field = field
        self.component = component
        self.reason = reason

    @property
    def location(self) -> str:
        """``PID-3`` / ``OBX-5.1`` / ``PID``."""
        if self.field is None:
            return self.segment
        return f"{self.segment}-{self.field}" + (f".{self.component}" if self.component else "")

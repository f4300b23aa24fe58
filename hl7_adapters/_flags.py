"""Context flags shared by the inbound pipeline and the outbound hooks."""

from __future__ import annotations

from contextvars import ContextVar

# True while the inbound pipeline writes a received message: orders that arrive over HL7 come from another
# system and are not sent back out to a lab.
INBOUND: ContextVar[bool] = ContextVar("hl7_inbound", default=False)

"""MLLP over asyncio: framing, the listener and a client for outbound messages."""

from hl7_adapters.mllp.framing import FrameDecoder, FrameTooLarge, frame

__all__ = ["FrameDecoder", "FrameTooLarge", "frame"]

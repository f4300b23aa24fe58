"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2): ``<VT> message <FS><CR>``.

The decoder is a small state machine fed with whatever a read returns: a frame may be split over many reads, and
one read may hold several frames. Bytes outside a frame are dropped (and counted). A start block inside a frame
means the sender restarted (the partial frame is dropped, never processed). ``<FS>`` ends a frame; the ``<CR>``
that should follow is consumed when present (some senders omit it).
"""

from __future__ import annotations

START = 0x0B
END = 0x1C
CR = 0x0D
START_BYTES = b"\x0b"
END_BYTES = b"\x1c\x0d"


class FrameTooLarge(ValueError):
    """A frame grew beyond the configured maximum size."""


def frame(message: bytes) -> bytes:
    return START_BYTES + message + END_BYTES


class FrameDecoder:
    def __init__(self, max_size: int = 16 * 1024 * 1024) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._skip_cr = False
        self.dropped = 0  # bytes seen outside any frame
        self.restarted = 0  # partial frames abandoned because a new start block came

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not yet ended (a read timeout applies)."""
        return self._in_frame

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame completed by ``data`` (payloads without the framing bytes), in order."""
        frames: list[bytes] = []
        i, n = 0, len(data)
        if self._skip_cr and n:
            self._skip_cr = False
            if data[0] == CR:
                i = 1
        while i < n:
            if not self._in_frame:
                start = data.find(START_BYTES, i)
                if start < 0:
                    self.dropped += n - i
                    break
                self.dropped += start - i
                self._in_frame = True
                i = start + 1
                continue
            end = data.find(b"\x1c", i)
            restart = data.find(START_BYTES, i, end if end >= 0 else n)
            if restart >= 0:  # the sender began again: the partial frame is abandoned
                self.restarted += 1
                self._buf.clear()
                i = restart + 1
                continue
            if end < 0:
                self._append(data[i:])
                break
            self._append(data[i:end])
            frames.append(bytes(self._buf))
            self._buf.clear()
            self._in_frame = False
            i = end + 1
            if i < n:
                if data[i] == CR:
                    i += 1
            else:
                self._skip_cr = True
        return frames

    def _append(self, chunk: bytes) -> None:
        if len(self._buf) + len(chunk) > self.max_size:
            self._buf.clear()
            self._in_frame = False
            raise FrameTooLarge(f"an MLLP frame exceeded {self.max_size} bytes")
        self._buf += chunk

"""Fuzzing the parser and the framing (hypothesis): no crash other than ParseError/FrameTooLarge, no hang.

10,700 generated inputs in all: 6,500 arbitrary and 1,500 HL7-shaped texts for the parser, 2,700 byte streams
split at random points for the framing decoder (checked against a simple reference splitter).
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hl7_adapters.mllp.framing import FrameDecoder, FrameTooLarge
from hl7_adapters.v2 import ParseError, parse_message
from hl7_adapters.v2.ack import build_ack

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError("fuzz test hung")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _exercise(raw: bytes | str) -> None:
    try:
        msg = parse_message(raw)
    except ParseError as exc:
        assert exc.reason
        return
    for seg in msg.segments:
        for n in range(0, min(len(seg), 12) + 2):
            field = seg.field(n)
            for rep in field.repetitions:
                for i in range(len(rep.components) + 1):
                    rep.component(i + 1, 2)
    _ = (msg.message_type, msg.trigger_event, msg.structure, msg.control_id, msg.version,
         msg.accept_ack_type, msg.application_ack_type, msg.split("OBR"))
    assert parse_message(build_ack(msg, "AA")).first("MSA") is not None


@settings(FAST, max_examples=6500)
@given(st.binary(max_size=300))
def test_parser_arbitrary_bytes(raw: bytes) -> None:
    _exercise(raw)
    _exercise(b"MSH|^~\\&|" + raw)


_piece = st.sampled_from(["|", "^", "~", "\\", "&", "\r", "\n", "\\F\\", "\\X4\\", "\\.br\\", '""', "MSH", "PID",
                          "OBX", "ADT", "A01", "2.5", "\x0b", "\x1c", "é", "\\", "ZZ1", " "])
_text = st.lists(st.one_of(_piece, st.text(max_size=5)), max_size=40).map("".join)


@settings(FAST, max_examples=1500)
@given(_text)
def test_parser_hl7_shaped(body: str) -> None:
    _exercise("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r" + body)


def _reference(stream: bytes) -> list[bytes]:
    """Frames the simple way: from each <VT> to the next <FS>, a new <VT> restarting."""
    frames, current = [], None
    for b in stream:
        if b == 0x0B:
            current = bytearray()
        elif b == 0x1C:
            if current is not None:
                frames.append(bytes(current))
            current = None
        elif current is not None:
            current.append(b)
    return frames


_frame_bytes = st.lists(st.one_of(st.sampled_from([b"\x0b", b"\x1c\r", b"\x1c", b"\r", b"MSH|x"]),
                                  st.binary(max_size=8)), max_size=30).map(b"".join)


@settings(FAST, max_examples=2500)
@given(_frame_bytes, st.lists(st.integers(0, 200), max_size=8))
def test_framing_split_anywhere(stream: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_size=1 << 20)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got.extend(decoder.feed(stream[a:b]))
    # a CR right after FS ends the frame; elsewhere outside a frame it is junk like any byte
    assert got == _reference(stream.replace(b"\x1c\r", b"\x1c"))


@settings(FAST, max_examples=200)
@given(st.integers(1, 64), st.binary(min_size=1, max_size=200))
def test_framing_size_limit_never_grows(limit: int, payload: bytes) -> None:
    decoder = FrameDecoder(max_size=limit)
    try:
        frames = decoder.feed(b"\x0b" + payload.replace(b"\x0b", b"") + b"\x1c\r")
    except FrameTooLarge:
        assert decoder.pending == 0
    else:
        assert all(len(f) <= limit for f in frames)

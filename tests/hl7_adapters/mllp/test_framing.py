"""MLLP framing: frames split across reads, several per read, junk between frames, restarts, size limit."""

from __future__ import annotations

import pytest

from hl7_adapters.mllp.framing import FrameDecoder, FrameTooLarge, frame


def test_one_frame() -> None:
    assert FrameDecoder().feed(frame(b"MSH|x")) == [b"MSH|x"]


def test_split_at_every_byte() -> None:
    data = frame(b"MSH|first\r") + frame(b"MSH|second\r")
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(data)):
        got.extend(decoder.feed(data[i:i + 1]))
    assert got == [b"MSH|first\r", b"MSH|second\r"]
    assert not decoder.in_frame and decoder.dropped == 0


def test_several_frames_and_junk() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"junk" + frame(b"a") + b"\r\n" + frame(b"b") + b"\x0bc") == [b"a", b"b"]
    assert decoder.dropped == 6 and decoder.in_frame
    assert decoder.feed(b"d\x1c\r") == [b"cd"]


def test_restart_abandons_partial_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0bpartial") == []
    assert decoder.feed(b"\x0bwhole\x1c\r") == [b"whole"]
    assert decoder.restarted == 1


def test_missing_cr_after_fs_is_tolerated() -> None:
    assert FrameDecoder().feed(b"\x0ba\x1c\x0bb\x1c") == [b"a", b"b"]


def test_size_limit() -> None:
    decoder = FrameDecoder(max_size=10)
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\x0b" + b"x" * 11)
    assert not decoder.in_frame
    assert decoder.feed(frame(b"ok")) == [b"ok"]

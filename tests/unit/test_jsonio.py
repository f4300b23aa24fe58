"""JSON fidelity: decimals keep their digits; duplicate keys, NaN and bad UTF-8 are refused."""

from __future__ import annotations

import pytest

from fhir_server import jsonio


def test_decimals_round_trip_with_their_spelling() -> None:
    text = b'{"a":1.50,"b":[0.0,-0,1e3,12345678901234567890],"c":7}'
    assert jsonio.dumps(jsonio.loads(text)) == text


@pytest.mark.parametrize("text", [
    b'{"a":1,"a":2}',
    b'{"x":{"b":1,"c":2,"b":3}}',
    b'[{"ok":1},{"k":1,"k":1}]',
])
def test_duplicate_keys_are_refused_at_any_depth(text: bytes) -> None:
    with pytest.raises(jsonio.JsonError, match="duplicate property"):
        jsonio.loads(text)


@pytest.mark.parametrize("text", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1', b'\xff{}'])
def test_not_json_is_refused(text: bytes) -> None:
    with pytest.raises(jsonio.JsonError):
        jsonio.loads(text)


def test_byte_order_mark_is_skipped() -> None:
    assert jsonio.loads("\ufeff{\"a\":1}".encode()) == {"a": 1}

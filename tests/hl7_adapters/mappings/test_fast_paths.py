"""The mapping's fast paths give what the general code gives: search tokens percent-encoded like
``urllib.parse.quote(..., safe="")``, and times converted once per distinct value like every time."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._types import parse_ts, token, ts
from hl7_adapters.v2._delimiters import DEFAULT
from hl7_adapters.v2.message import Segment

_TEXT = st.text(alphabet=st.sampled_from(list("aZ09_.-~ |,$\\:/%+&=?#^é€\x7f\t")), min_size=1, max_size=20)


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.none(), _TEXT), _TEXT)
def test_token_is_the_quoted_search_token(system: str | None, value: str) -> None:
    identifier = {"value": value} if system is None else {"system": system, "value": value}
    raw = f"{_escaped(system)}|{_escaped(value)}" if system else _escaped(value)
    assert token(identifier) == quote(raw, safe="")


@pytest.mark.parametrize("kind", ["date", "dateTime", "instant"])
@pytest.mark.parametrize("offset", [None, "+0100", "-0500"])
@pytest.mark.parametrize("text", ["2024", "202401", "20240105", "202401051100", "20240105115000",
                                  "20240105115000.12+0200", "20240105115000-0000", '""', ""])
def test_ts_twice_is_ts_from_scratch(text: str, offset: str | None, kind: str) -> None:
    seg = Segment(f"OBX|1|TS|c||{text}", 1, DEFAULT)
    stamp = parse_ts(text)
    expected = None if stamp is None else stamp.date() if kind == "date" else \
        stamp.instant(offset) if kind == "instant" else stamp.datetime(offset)
    assert ts(seg, 5, offset, kind=kind) == expected
    assert ts(seg, 5, offset, kind=kind) == expected


def test_an_invalid_time_fails_every_time_naming_its_field() -> None:
    for _ in range(2):
        with pytest.raises(MappingError) as info:
            ts(Segment("OBX|1|TS|c||20241345", 3, DEFAULT), 5, None)
        assert info.value.field == 5 and info.value.segment == "OBX"

"""The field access fast paths of the message model give exactly what the general split-and-decode gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hl7_adapters.v2._delimiters import DEFAULT, Delimiters
from hl7_adapters.v2._escape import decode
from hl7_adapters.v2.message import Repetition, Segment
from hl7_adapters.v2.parser import parse_message

_TEXT = st.text(alphabet="ab1 ^&\\~.HTXE|\"", max_size=30)


def _general(raw: str, d: Delimiters) -> list[list[str]]:
    return [[decode(sub, d) for sub in comp.split(d.subcomponent)] for comp in raw.split(d.component)]


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.sampled_from([DEFAULT, Delimiters("|", "^", "~", "", "&"), Delimiters("|", "#", "~", "!", "$")]))
def test_repetition_components_match_the_general_split(raw: str, d: Delimiters) -> None:
    assert Repetition(raw, d).components == _general(raw, d)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXT.filter(lambda t: "|" not in t), min_size=1, max_size=6),
       st.integers(0, 8), st.integers(0, 4), st.integers(0, 3), st.integers(0, 3))
def test_segment_value_matches_field_value(fields: list[str], n: int, component: int, repetition: int,
                                           sub: int) -> None:
    raw = "OBX|" + "|".join(fields)
    fresh, cached = Segment(raw, 1, DEFAULT), Segment(raw, 1, DEFAULT)
    cached.field(n)  # one segment reads through its cache, the other builds the field
    expected = Segment(raw, 1, DEFAULT).field(n).value(component, repetition, sub)
    assert fresh.value(n, component, repetition, sub) == expected
    assert cached.value(n, component, repetition, sub) == expected


def test_values_with_escapes_and_subcomponents_are_still_decoded() -> None:
    msg = parse_message("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rOBX|1|ST|a&b^c\\T\\d||x\\F\\y~z\r")
    obx = msg.segments[1]
    assert obx.value(3, 1, 0, 1) == "a" and obx.value(3, 1, 0, 2) == "b"
    assert obx.value(3, 2) == "c&d"
    assert obx.value(5) == "x|y" and obx.value(5, repetition=1) == "z"
    assert obx.value(5, 2) == "" and obx.value(9) == ""

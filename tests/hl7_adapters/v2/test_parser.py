"""The ER7 parser: delimiters, terminators, escapes, repetitions, MSH numbering, errors."""

from __future__ import annotations

import pytest

from hl7_adapters.v2 import ParseError, parse_header, parse_message
from hl7_adapters.v2._delimiters import DEFAULT
from hl7_adapters.v2._escape import decode, encode

ORU = (
    "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240105103000+0100||ORU^R01^ORU_R01|CTRL-1|P|2.5.1|||AL|NE\r"
    "PID|1||12345^^^HOSP&1.2.3&ISO^MR~999^^^SSA^SS||Doe^John^Q||19800101|M\r"
    "OBR|1|PL-1^EHR|FL-1^LAB|2345-7^Glucose^LN\r"
    "OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F\r"
    "OBX|2|ST|text^Comment^L||a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f \\X41\\ g\\.br\\h|||\"\"\r"
)


def test_header_properties() -> None:
    msg = parse_message(ORU.encode())
    assert (msg.message_type, msg.trigger_event, msg.structure) == ("ORU", "R01", "ORU_R01")
    assert (msg.control_id, msg.version) == ("CTRL-1", "2.5.1")
    assert (msg.sending_application, msg.sending_facility) == ("LAB", "LABFAC")
    assert (msg.receiving_application, msg.receiving_facility) == ("EHR", "HOSP")
    assert (msg.accept_ack_type, msg.application_ack_type) == ("AL", "NE")
    assert msg.msh.field(1).value() == "|"
    assert msg.msh.field(2).value() == "^~\\&"
    assert msg.msh.value(9, 2) == "R01"
    assert len(msg.msh) == 16


def test_segments_fields_components() -> None:
    msg = parse_message(ORU)
    assert [s.name for s in msg.segments] == ["MSH", "PID", "OBR", "OBX", "OBX"]
    assert [s.index for s in msg.all("OBX")] == [3, 4]
    pid = msg.first("PID")
    assert pid is not None
    ids = pid.field(3)
    assert bool(ids) and len(ids.repetitions) == 2
    assert ids.repetitions[0].component(1) == "12345"
    assert ids.repetitions[0].component(4, 2) == "1.2.3"
    assert ids.repetitions[0].components[3] == ["HOSP", "1.2.3", "ISO"]
    assert pid.value(3, 5, repetition=1) == "SS"
    assert pid.value(5, 2) == "John"
    assert pid.value(40) == "" and not pid.field(40) and pid.field(40).repetitions == []
    assert pid.value(3, 9, repetition=7) == ""
    assert msg.first("ZZZ") is None


def test_escapes_and_null() -> None:
    obx = parse_message(ORU).all("OBX")[1]
    assert obx.value(5) == "a | b ^ c & d ~ e \\ f A g\nh"
    assert obx.value(8) == '""'  # HL7 null kept literally


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_terminators(terminator: str) -> None:
    msg = parse_message(ORU.replace("\r", terminator) + terminator * 2)
    assert [s.name for s in msg.segments] == ["MSH", "PID", "OBR", "OBX", "OBX"]
    assert msg.all("OBX")[0].value(5) == "95"


def test_custom_delimiters() -> None:
    text = "MSH#*@!%#A#B#C#D#20240101##ADT*A01#9#P#2.3\rPID#1##7*x*y%z@8"
    msg = parse_message(text)
    assert msg.trigger_event == "A01"
    pid = msg.first("PID")
    assert pid is not None
    assert pid.value(3, 3) == "y" and pid.value(3, 3, subcomponent=2) == "z"
    assert pid.value(3, 1, repetition=1) == "8"


def test_split_groups() -> None:
    msg = parse_message(ORU + "OBR|2|PL-2\rOBX|1|NM|x||1\r")
    groups = msg.split("OBR")
    assert [[s.name for s in g] for g in groups] == [["OBR", "OBX", "OBX"], ["OBR", "OBX"]]


def test_structure_derived_for_shared_structures() -> None:
    msg = parse_message("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.3\r")
    assert msg.structure == "ADT_A01"


def test_bytes_latin1_fallback() -> None:
    raw = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.3\rPID|1||1||Müller".encode("latin-1")
    pid = parse_message(raw).first("PID")
    assert pid is not None and pid.value(5) == "Müller"


@pytest.mark.parametrize(("text", "segment", "field"), [
    ("", None, None),
    ("\r\n\r", None, None),
    ("PID|1\r", "PID", None),
    ("MSH|^~", "MSH", 2),
    ("MSH|^~\\&&|A", "MSH", 1),
    ("MSH|^~\\|||A|B|||||", "MSH", 2),
    ("MSH|^~\\&|A|B|C|D|2024||^A01|1|P|2.5\r", "MSH", 9),
    ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rpid|1\r", "pid", None),
    ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPIDX|1\r", "PID", None),
])
def test_parse_errors(text: str, segment: str | None, field: int | None) -> None:
    with pytest.raises(ParseError) as caught:
        parse_message(text)
    assert caught.value.segment == segment
    assert caught.value.field == field
    assert caught.value.reason


def test_parse_header_is_lenient() -> None:
    header = parse_header(b"MSH|^~\\&|A|B|C|D|2024||^A01|42|P|2.5\r\x00garbage")
    assert header is not None and header.control_id == "42"
    assert parse_header(b"junk") is None


def test_escape_round_trip() -> None:
    text = "a|b^c~d\\e&f\r\ng"
    encoded = encode(text, DEFAULT)
    assert not any(c in encoded for c in "|^~&\r\n")
    assert decode(encoded, DEFAULT) == "a|b^c~d\\e&f\ng"
    assert decode("unterminated \\F", DEFAULT) == "unterminated \\F"
    assert decode("\\H\\bold\\N\\ \\Cxxyy\\", DEFAULT) == "bold "

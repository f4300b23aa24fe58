"""ACK building: addressing, MSA, ERR in the v2.5+ and the v2.3/2.4 layouts."""

from __future__ import annotations

from hl7_adapters.v2 import parse_message
from hl7_adapters.v2.ack import ErrorDetail, build_ack, new_control_id, segment_sequence

MSG = "MSH|^~\\&|LAB^1.2^ISO|LF|EHR|HOSP|20240105||ORU^R01|C-9|T|{v}\rPID|1\rOBX|1\rOBX|2\r"


def test_ack_addressing_and_msa() -> None:
    msg = parse_message(MSG.format(v="2.5.1"))
    ack = parse_message(build_ack(msg, "AA"))
    assert (ack.message_type, ack.trigger_event, ack.structure) == ("ACK", "R01", "ACK")
    assert (ack.msh.field(3).raw, ack.msh.field(4).raw) == ("EHR", "HOSP")
    assert (ack.msh.field(5).raw, ack.msh.field(6).raw) == ("LAB^1.2^ISO", "LF")
    assert (ack.processing_id, ack.version) == ("T", "2.5.1")
    msa = ack.first("MSA")
    assert msa is not None and (msa.value(1), msa.value(2)) == ("AA", "C-9")
    assert ack.first("ERR") is None
    assert len(ack.control_id) <= 20 and ack.control_id != new_control_id()


def test_err_v25() -> None:
    msg = parse_message(MSG.format(v="2.5"))
    detail = ErrorDetail("102", "OBX-5: not a number | really", "OBX", segment_sequence(msg, 3), 5, 1)
    ack = parse_message(build_ack(msg, "AE", detail.text, [detail]))
    err = ack.first("ERR")
    assert err is not None
    assert [err.value(2, i) for i in (1, 2, 3, 5)] == ["OBX", "2", "5", "1"]
    assert (err.value(3, 1), err.value(3, 3), err.value(4)) == ("102", "HL70357", "E")
    assert err.value(8) == "OBX-5: not a number | really"
    assert ack.first("MSA").value(3) == "OBX-5: not a number | really"  # type: ignore[union-attr]
    assert detail.location == "OBX[2]-5.1"


def test_err_v23_uses_err1() -> None:
    msg = parse_message(MSG.format(v="2.3"))
    ack = parse_message(build_ack(msg, "AR", "no", [ErrorDetail("203", "version", "MSH", 1, 12)]))
    err = ack.first("ERR")
    assert err is not None
    assert (err.value(1, 1), err.value(1, 3), err.value(1, 4, subcomponent=1)) == ("MSH", "12", "203")
    assert ack.msh.value(9) == "ACK" and ack.msh.value(9, 3) == ""


def test_ack_without_message() -> None:
    ack = parse_message(build_ack(None, "AR", "unparseable"))
    assert ack.first("MSA").value(1) == "AR"  # type: ignore[union-attr]
    assert ack.control_id

"""HL7 v2 data types → FHIR data types (pure functions)."""

from __future__ import annotations

import orjson
import pytest

from hl7_adapters.mappings import MappingError
from hl7_adapters.mappings._types import (
    authority_system,
    codeable,
    coding_system,
    cx,
    decimal,
    interpretation,
    parse_ts,
    reference_range,
    ts,
    unit,
    xad,
    xpn,
    xtn,
)
from hl7_adapters.v2 import parse_message
from hl7_adapters.v2.message import Repetition, Segment


def seg(text: str, version: str = "2.5.1") -> Segment:
    msg = parse_message(f"MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A01|1|P|{version}\r{text}\r")
    return msg.segments[1]


def rep(text: str) -> Repetition:
    return seg(f"ZZZ|{text}").field(1).repetitions[0]


def dumps(value: object) -> str:
    return orjson.dumps(value).decode()


@pytest.mark.parametrize(("text", "offset", "expected"), [
    ("2024", None, "2024"),
    ("202403", None, "2024-03"),
    ("20240315", None, "2024-03-15"),
    ("202403151230", "+0100", "2024-03-15T12:30:00+01:00"),
    ("20240315123045-0500", None, "2024-03-15T12:30:45-05:00"),
    ("20240315123045.1234+0215", None, "2024-03-15T12:30:45.1234+02:15"),
    ("20240315123045+0000", None, "2024-03-15T12:30:45Z"),
    ("2024031512", "-0330", "2024-03-15T12:00:00-03:30"),
    ("202403151230", None, "2024-03-15"),  # no offset anywhere: the time is dropped, never guessed
])
def test_timestamps_keep_precision_and_offset(text: str, offset: str | None, expected: str) -> None:
    stamp = parse_ts(text)
    assert stamp is not None
    assert stamp.datetime(offset) == expected


def test_instant_needs_seconds_precision_and_an_offset() -> None:
    assert parse_ts("20240315")is not None
    assert parse_ts("20240315").instant("+0100") is None  # type: ignore[union-attr]
    assert parse_ts("202403151230").instant(None) is None  # type: ignore[union-attr]
    assert parse_ts("202403151230").instant("+0100") == "2024-03-15T12:30:00+01:00"  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["20241301", "20240230", "2024-03-15", "20240315126000", "202403151230+2500",
                                  "abc"])
def test_invalid_timestamps_name_the_field(text: str) -> None:
    pid = seg(f"PID|1||123^^^H^MR||Doe^Jane||{text}")
    with pytest.raises(MappingError) as info:
        ts(pid, 7, None)
    assert (info.value.segment, info.value.field, info.value.segment_index) == ("PID", 7, 1)
    assert text in info.value.reason
    assert str(info.value).startswith("PID-7: ")


def test_missing_offset_falls_back_to_the_message_offset() -> None:
    pid = seg("PID|1||123^^^H^MR||Doe^Jane||198001021530")
    assert ts(pid, 7, "+0100") == "1980-01-02T15:30:00+01:00"
    assert ts(pid, 7, "+0100", kind="date") == "1980-01-02"


def test_coding_systems() -> None:
    assert coding_system("LN") == "http://loinc.org"
    assert coding_system("SCT") == coding_system("SNM") == "http://snomed.info/sct"
    assert coding_system("I10") == "http://hl7.org/fhir/sid/icd-10"
    assert coding_system("I10C") == "http://hl7.org/fhir/sid/icd-10-cm"
    assert coding_system("CVX") == "http://hl7.org/fhir/sid/cvx"
    assert coding_system("HL70078") == "http://terminology.hl7.org/CodeSystem/v2-0078"
    assert coding_system("2.16.840.1.113883.6.1") == "urn:oid:2.16.840.1.113883.6.1"
    assert coding_system("L") is None and coding_system("99ZZZ") is None and coding_system("") is None


def test_cwe_with_alternate_coding_and_original_text() -> None:
    concept = codeable(rep("625-4^Bacteria^LN^BAC^Bacteria local^L^2.68^^Culture result"))
    assert concept == {"coding": [{"system": "http://loinc.org", "version": "2.68", "code": "625-4",
                                   "display": "Bacteria"},
                                  {"code": "BAC", "display": "Bacteria local"}],
                       "text": "Culture result"}
    assert codeable(rep("^Just text")) == {"text": "Just text"}
    assert codeable(rep('""')) is None


def test_identifier_system_from_the_assigning_authority() -> None:
    assert authority_system("NS", "2.16.840.1.113883.19", "ISO") == "urn:oid:2.16.840.1.113883.19"
    assert authority_system("", "https://hospital.example/mrn", "URI") == "https://hospital.example/mrn"
    assert authority_system("Good Health", "", "") == "urn:infirmary:hl7v2:authority:Good%20Health"
    assert authority_system("", "", "") is None
    ident = cx(rep("PATID1234^5^M11^GH&2.16.1&ISO^MR^^20200101^20251231"), "urn:fallback")
    assert ident == {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                          "code": "MR"}]},
                     "system": "urn:oid:2.16.1", "value": "PATID1234",
                     "period": {"start": "2020-01-01", "end": "2025-12-31"}}
    assert cx(rep("42"), "urn:fallback") == {"system": "urn:fallback", "value": "42"}


def test_names_addresses_telecoms() -> None:
    assert xpn(rep("EVERYMAN&van^ADAM^A^III^Dr.^MD^L")) == {
        "use": "official", "family": "EVERYMAN", "given": ["ADAM", "A"], "prefix": ["Dr."],
        "suffix": ["III", "MD"]}
    assert xad(rep("1000&Hospital Lane^Ste. 123^Ann Arbor^MI^99999^USA^H^^Washtenaw")) == {
        "use": "home", "line": ["1000 Hospital Lane", "Ste. 123"], "city": "Ann Arbor", "district": "Washtenaw",
        "state": "MI", "postalCode": "99999", "country": "USA"}
    assert xtn(rep("^PRN^PH^^1^586^3365555^12")) == {"system": "phone", "value": "+1 (586) 3365555 ext. 12",
                                                      "use": "home"}
    assert xtn(rep("(555)555-5555^WPN^PH")) == {"system": "phone", "value": "(555)555-5555", "use": "work"}
    assert xtn(rep("^NET^Internet^jane@example.org")) == {"system": "email", "value": "jane@example.org",
                                                           "use": "home"}
    assert xtn(rep("^PRN^CP^^^617^5551234")) == {"system": "phone", "value": "(617) 5551234", "use": "mobile"}


def test_numbers_keep_their_digits_and_units_become_ucum() -> None:
    assert dumps(decimal("40.10")) == "40.10"
    assert dumps(decimal("-.5")) == "-0.5"
    assert dumps(decimal("007")) == "7"
    assert decimal("12a") is None and decimal("") is None
    assert unit(rep("mg/dL^milligram per deciliter^UCUM")) == {
        "unit": "milligram per deciliter", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert unit(rep("beats/min^^ISO+")) == {"unit": "beats/min", "system": "http://unitsofmeasure.org",
                                             "code": "/min"}
    assert unit(rep("furlongs^^L")) == {"unit": "furlongs"}


def test_reference_ranges_and_abnormal_flags() -> None:
    units = {"unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert dumps(reference_range("3.5-5.10", units)) == dumps(
        {"low": {"value": 3.5, **units}, "high": {"value": orjson.Fragment("5.10"), **units}, "text": "3.5-5.10"})
    assert dumps(reference_range("<200", units)) == dumps({"high": {"value": 200, **units}, "text": "<200"})
    assert dumps(reference_range(">=1", units)) == dumps({"low": {"value": 1, **units}, "text": ">=1"})
    assert reference_range("negative", units) == {"text": "negative"}
    assert interpretation(rep("HH")) == {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "HH",
        "display": "Critical high"}]}
    assert interpretation(rep("QQ")) == {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": "QQ"}]}


def test_fast_uuid5_equals_the_standard_one() -> None:
    import uuid

    from hl7_adapters.mappings._bundle import _NAMESPACE, uuid5

    for name in ("", "Patient|urn:oid:1.2|42", "é\x1fü|x" * 20):
        assert uuid5(name) == str(uuid.uuid5(_NAMESPACE, name))

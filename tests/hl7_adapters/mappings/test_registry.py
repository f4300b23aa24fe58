"""The registry over all 69 samples: every mapped message gives a Bundle this server accepts, the others are
refused with a reason; mappings are pure and deterministic; bad content names its segment and field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hl7_adapters.mappings import MappingError, UnsupportedMessage, map_message, merge, supported
from hl7_adapters.v2 import parse_message
from tests.hl7_adapters.mappings.conftest import BASE, FHIR, samples_dir

UNSUPPORTED = {"ADT^A09", "ADT^A10", "ADT^A15", "ADT^A16", "ADT^A25", "ADT^A26", "ADT^A27", "ADT^A29", "ADT^A41",
               "ADT^A45", "ADT^A47", "ADT^A60", "BAR^P01", "BAR^P02", "BAR^P12", "DFT^P11", "MDM^T01", "MDM^T02",
               "MDM^T05", "MDM^T06", "MDM^T09", "MDM^T10", "OMG^O19", "OUL^R23", "OUL^R24", "PPR^PC1", "PPR^PC2",
               "PPR^PC3", "RDE^O25", "RDS^O13", "REF^I12", "REF^I14", "SIU^S16"}


async def test_every_sample_is_accepted_or_refused_with_a_reason(app: Any, client: Any) -> None:
    files = sorted(samples_dir().glob("*.hl7"))
    assert len(files) >= 69
    applied, refused = [], set()
    for path in files:
        msg = parse_message(path.read_bytes())
        kind = f"{msg.message_type}^{msg.trigger_event}"
        try:
            bundle = map_message(msg)
        except UnsupportedMessage as exc:
            assert kind in exc.reason and "ADT^A01" in exc.reason  # names what came and what is accepted
            refused.add(kind)
            continue
        await merge.complete(msg, bundle, app.state.fhir.unscoped(), BASE)
        response = await client.post("", content=orjson.dumps(bundle), headers=FHIR)
        assert response.status_code == 200, f"{path.name}: {response.text}"
        statuses = [e["response"]["status"][:3] for e in response.json()["entry"]]
        assert set(statuses) <= {"200", "201"}, path.name
        applied.append(path.name)
    assert refused == UNSUPPORTED
    assert len(applied) == len(files) - sum(
        1 for p in files if "{0.message_type}^{0.trigger_event}".format(parse_message(p.read_bytes())) in UNSUPPORTED)
    assert {(t, e) for t, e in supported()} >= {("ADT", "A40"), ("ORU", "R01"), ("OUL", "R22"), ("SIU", "S26"),
                                                 ("DFT", "P03"), ("RDE", "O11"), ("VXU", "V04"), ("OML", "O21")}


def test_mappings_are_pure_and_deterministic() -> None:
    for path in sorted(samples_dir().glob("*.hl7")):
        raw = path.read_bytes()
        try:
            first = orjson.dumps(map_message(parse_message(raw)))
        except UnsupportedMessage:
            continue
        assert orjson.dumps(map_message(parse_message(raw))) == first, path.name


def test_versions_outside_2_3_to_2_8_are_refused() -> None:
    msg = parse_message("MSH|^~\\&|A|F|B|G|20240101||ADT^A01|1|P|2.2\rPID|1||1^^^H^MR||Doe^J\r")
    with pytest.raises(UnsupportedMessage, match=r"version '2.2' \(MSH-12\)"):
        map_message(msg)


MSH = "MSH|^~\\&|APP|FAC|EHR|HOSP|20240101120000+0100||{type}|C1|P|2.5.1\r"
PID = "PID|1||123^^^HOSP^MR||Doe^Jane||19800101|F\r"
PV1 = "PV1|1|I|W1^1^1||||||||||||||||V1^^^HOSP^VN|||||||||||||||||||||||||20240101100000+0100\r"
OBR = "OBR|1|P1|F1|2345-7^Glucose^LN|||20240101100000\r"


@pytest.mark.parametrize(("message", "segment", "index", "field"), [
    (MSH.format(type="ADT^A01") + PV1, "PID", -1, None),
    (MSH.format(type="ADT^A01") + "PID|1||||Doe^Jane\r" + PV1, "PID", 1, 3),
    (MSH.format(type="ADT^A01") + "PID|1||123^^^HOSP^MR||Doe^Jane||19801301\r" + PV1, "PID", 1, 7),
    (MSH.format(type="ADT^A01") + PID + PV1.replace("PV1|1|I|", "PV1|1||"), "PV1", 2, 2),
    (MSH.format(type="ADT^A03") + PID + PV1.replace("20240101100000+0100", "2024010110000x"), "PV1", 2, 44),
    (MSH.format(type="ORU^R01") + PID + OBR + "OBX|1|NM|2345-7^Glucose^LN||high|mg/dL\r", "OBX", 3, 5),
    (MSH.format(type="ORU^R01") + PID + "OBR|1|P1|F1\r" + "OBX|1|NM|2345-7^Glucose^LN||5.5\r", "OBR", 2, 4),
    (MSH.format(type="ORU^R01") + PID + OBR + "OBX|1|NM|||5.5\r", "OBX", 3, 3),
    (MSH.format(type="ORU^R01") + PID, "OBR", -1, None),
    (MSH.format(type="ORM^O01") + PID + "ORC|NW\r" + "OBR|1|||2345-7^Glucose^LN\r", "ORC", 2, 2),
    (MSH.format(type="SIU^S12") + "SCH|A1|B1\r" + PID, "TQ1", -1, 7),
    (MSH.format(type="VXU^V04") + PID + "RXA|0|1|20240101||\r", "RXA", 2, 5),
    (MSH.format(type="DFT^P03") + PID + "FT1|1|T1||20240101||CG|\r", "FT1", 2, 7),
    (MSH.format(type="ADT^A40") + PID + "MRG|123^^^HOSP^MR\r", "MRG", 2, 1),
])
def test_mapping_errors_name_segment_and_field(message: str, segment: str, index: int, field: int | None) -> None:
    with pytest.raises(MappingError) as info:
        map_message(parse_message(message))
    error = info.value
    assert (error.segment, error.segment_index, error.field) == (segment, index, field)
    assert error.reason and str(error).startswith(error.location)

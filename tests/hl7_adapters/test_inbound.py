"""The inbound pipeline over MLLP, and must-show 3 (faults): malformed input, a message cut mid-frame, a
connection dropped before the ACK, the database failing mid-transaction, a duplicate control id — nothing
half-written, the right ACK or none."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from typing import Any

import httpx
import pytest

from fhir_server.storage.sqlite._tx import TxWriter
from hl7_adapters.message_log import ACK_CODE_SYSTEM, CODE_SYSTEM
from hl7_adapters.mllp.client import MllpClient, MllpError
from hl7_adapters.mllp.framing import frame
from hl7_adapters.v2 import parse_message
from tests.hl7_adapters.conftest import exchange, msa

HEADER = "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240105103000||{type}|{ctrl}|P|{version}{modes}\r"
PATIENT = "PID|1||123^^^HOSP^MR||Doe^John||19800101|M\r"
RESULT = "OBR|1|PL1|FL1|2345-7^Glucose^LN|||20240105\rOBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL|70-99|N|||F\r"
MRN = "urn:infirmary:hl7v2:authority:HOSP|123"


def oru(ctrl: str, value: str = "95", modes: str = "", version: str = "2.5.1") -> str:
    return HEADER.format(type="ORU^R01", ctrl=ctrl, version=version, modes=modes) + PATIENT + \
        RESULT.format(value=value)


async def count(rest: httpx.AsyncClient, query: str) -> int:
    response = await rest.get(query + "&_summary=count")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def log_outcomes(rest: httpx.AsyncClient) -> list[str]:
    response = await rest.get(f"Basic?code={CODE_SYSTEM}|hl7v2-message&_count=100")
    return sorted(c["code"] for e in response.json().get("entry", []) for c in e["resource"]["code"]["coding"]
                  if c["system"] == ACK_CODE_SYSTEM)


@pytest.fixture
async def client(mllp_port: int) -> Any:
    async with MllpClient("127.0.0.1", mllp_port, timeout_s=10) as c:
        yield c


async def test_applied_result(client: MllpClient, rest: httpx.AsyncClient) -> None:
    (ack,) = await exchange(client, oru("C-1"))
    assert msa(ack) == ("AA", "C-1", "")
    assert await count(rest, f"Patient?identifier={MRN}") == 1
    assert await count(rest, "Observation?code=http://loinc.org|2345-7") == 1
    assert await log_outcomes(rest) == ["AA"]


async def test_malformed_and_unparseable_get_ar(client: MllpClient, rest: httpx.AsyncClient) -> None:
    (ack,) = await exchange(client, b"this is not an HL7 message")
    assert msa(ack)[0] == "AR" and "unparseable" in msa(ack)[2]
    (ack,) = await exchange(client, "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|2024||ORU^R01||P|2.5.1\r" + PATIENT)
    code, ctrl, _ = msa(ack)
    err = ack.first("ERR")
    assert (code, ctrl) == ("AR", "") and err is not None
    assert (err.value(2, 1), err.value(2, 3), err.value(3)) == ("MSH", "10", "101")
    (ack,) = await exchange(client, oru("C-2", version="2.2"))
    assert msa(ack)[0] == "AR" and ack.first("ERR").value(1, 4) == "203"  # type: ignore[union-attr]
    assert await count(rest, "Patient?_id:missing=false") == 0
    assert await log_outcomes(rest) == ["AR", "AR", "AR"]


async def test_mapping_error_ae_names_segment_and_field(client: MllpClient, rest: httpx.AsyncClient) -> None:
    (ack,) = await exchange(client, oru("C-3", value="abc"))
    assert msa(ack)[0] == "AE" and "OBX-5" in msa(ack)[2]
    err = ack.first("ERR")
    assert err is not None
    assert [err.value(2, i) for i in (1, 2, 3)] == ["OBX", "1", "5"] and err.value(3) == "102"
    assert err.value(4) == "E"
    assert await count(rest, f"Patient?identifier={MRN}") == 0  # nothing of the message was written
    assert await log_outcomes(rest) == ["AE"]


async def test_transaction_error_ae_names_segment(client: MllpClient, rest: httpx.AsyncClient) -> None:
    for _ in range(2):  # two patients with the same MRN: the conditional update cannot choose
        patient = {"resourceType": "Patient", "identifier": [{"system": MRN.split("|")[0], "value": "123"}]}
        assert (await rest.post("Patient", json=patient)).status_code == 201
    adt = HEADER.format(type="ADT^A08", ctrl="C-4", version="2.5.1", modes="") + "EVN|A08|20240105\r" + \
        PATIENT + "PV1|1|I|||||||||||||||||V1\r"
    (ack,) = await exchange(client, adt)
    err = ack.first("ERR")
    assert msa(ack)[0] == "AE" and err is not None
    assert err.value(2, 1) == "PID" and err.value(3) == "204"
    assert await count(rest, "Encounter?_id:missing=false") == 0
    assert await log_outcomes(rest) == ["AE"]


async def test_duplicate_control_id_is_acknowledged_without_writing_twice(
        client: MllpClient, rest: httpx.AsyncClient) -> None:
    (first,) = await exchange(client, oru("C-5"))
    (again,) = await exchange(client, oru("C-5"))
    assert msa(first) == msa(again) == ("AA", "C-5", "")
    assert again.raw == first.raw  # the very ACK sent the first time
    assert len((await rest.get("Observation/_history")).json()["entry"]) == 1
    patient = (await rest.get(f"Patient?identifier={MRN}")).json()["entry"][0]["resource"]
    assert patient["meta"]["versionId"] == "1"
    assert await log_outcomes(rest) == ["AA"]
    # the same control id with other content is another message (a sender reusing ids), not a retransmission
    (other,) = await exchange(client, oru("C-5", value="96"))
    assert msa(other)[0] == "AA"
    assert await log_outcomes(rest) == ["AA", "AA"]


async def test_concurrent_duplicates_write_once(mllp_port: int, rest: httpx.AsyncClient) -> None:
    clients = [MllpClient("127.0.0.1", mllp_port, timeout_s=10) for _ in range(4)]
    answers = await asyncio.gather(*(c.send(oru("C-6").encode()) for c in clients))
    for c in clients:
        await c.close()
    assert len(set(answers)) == 1
    assert len((await rest.get("Observation/_history")).json()["entry"]) == 1
    assert await log_outcomes(rest) == ["AA"]


async def test_pipelined_messages_are_answered_in_order(client: MllpClient) -> None:
    for i in range(3):  # written back to back, without waiting for the ACKs
        await client.write(oru(f"P-{i}").encode())
    assert [msa(parse_message(await client.read()))[1] for _ in range(3)] == ["P-0", "P-1", "P-2"]


async def test_cut_mid_frame_writes_nothing(mllp_port: int, client: MllpClient, rest: httpx.AsyncClient) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", mllp_port)
    whole = frame(oru("C-7").encode())
    writer.write(whole[: len(whole) // 2])
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.3)
    assert await log_outcomes(rest) == []
    assert await count(rest, f"Patient?identifier={MRN}") == 0
    (ack,) = await exchange(client, oru("C-8"))  # the listener carries on
    assert msa(ack)[0] == "AA"


async def test_connection_dropped_before_ack(mllp_port: int, client: MllpClient, rest: httpx.AsyncClient) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", mllp_port)
    writer.write(frame(oru("C-9").encode()))
    await writer.drain()
    writer.close()  # gone before the ACK
    for _ in range(100):
        if await log_outcomes(rest):
            break
        await asyncio.sleep(0.05)
    assert await log_outcomes(rest) == ["AA"]  # applied; the ACK had nowhere to go
    (ack,) = await exchange(client, oru("C-9"))  # the sender sends it again: acknowledged, not re-applied
    assert msa(ack) == ("AA", "C-9", "")
    assert len((await rest.get("Observation/_history")).json()["entry"]) == 1


async def test_database_failing_mid_transaction(client: MllpClient, rest: httpx.AsyncClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    original = TxWriter._apply_one
    calls = {"n": 0}

    def failing(self: TxWriter, op: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # two ops of the message's transaction are already applied
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, op)

    monkeypatch.setattr(TxWriter, "_apply_one", failing)
    (ack,) = await exchange(client, oru("C-10"))
    err = ack.first("ERR")
    assert msa(ack)[0] == "AR" and err is not None and err.value(3) == "207"
    assert calls["n"] >= 3
    monkeypatch.setattr(TxWriter, "_apply_one", original)
    assert await count(rest, f"Patient?identifier={MRN}") == 0  # rolled back whole
    assert await count(rest, "Observation?_id:missing=false") == 0
    (accept, app) = await exchange(client, oru("C-11", modes="|||AL|AL"), frames=2)
    assert (msa(accept)[0], msa(app)[0]) == ("CA", "AA")
    monkeypatch.setattr(TxWriter, "_apply_one", lambda self, op: (_ for _ in ()).throw(
        sqlite3.OperationalError("disk I/O error")))
    (accept,) = await exchange(client, oru("C-12", modes="|||AL|NE"))
    assert msa(accept)[0] == "CE"  # enhanced mode: the commit failed
    monkeypatch.setattr(TxWriter, "_apply_one", original)
    (ack,) = await exchange(client, oru("C-10"))  # sent again once the store is back: applied
    assert msa(ack)[0] == "AA"


@pytest.mark.parametrize(("modes", "value", "expected"), [
    ("|||AL|ER", "95", ["CA"]),
    ("|||NE|AL", "95", ["AA"]),
    ("|||ER|ER", "95", []),
    ("|||SU|ER", "abc", ["CA", "AE"]),  # CA: the message is stored (logged) although it was not applied
    ("|||ER|SU", "abc", []),
    ("|||AL|AL", "abc", ["CA", "AE"]),
])
async def test_enhanced_mode(client: MllpClient, modes: str, value: str, expected: list[str]) -> None:
    acks = await exchange(client, oru("E-1", value=value, modes=modes), frames=len(expected))
    assert [msa(a)[0] for a in acks] == expected


async def test_z_segments_ignored_but_logged(client: MllpClient, rest: httpx.AsyncClient) -> None:
    (ack,) = await exchange(client, oru("Z-1").replace("OBR|", "ZXY|private|data\rOBR|", 1).replace("\r", "\n"))
    assert msa(ack)[0] == "AA"
    entry = (await rest.get(f"Basic?code={CODE_SYSTEM}|hl7v2-message")).json()["entry"][0]["resource"]
    raw = base64.b64decode(next(x["valueBase64Binary"] for x in entry["extension"] if x["url"].endswith("-raw")))
    assert b"ZXY|private|data" in raw


async def test_mllp_client_timeout(client: MllpClient) -> None:
    with pytest.raises(MllpError):
        await client.read(0.05)

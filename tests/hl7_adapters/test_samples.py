"""Must-show 1: every HL7 v2 sample of ../shared/samples/hl7v2 sent over MLLP gets the right acknowledgement.

All 69 go over one connection to one server, in file order. The expected outcome comes from the issue's list of
mapped trigger events (and whatever more the mapping registry declares): applied → AA, anything else → AR with
a reason and an ERR (200/201) naming MSH-9. Which ACK frames come back (original mode, or enhanced mode's
accept and/or application ACK, or none for NE/NE) is worked out here from MSH-15/MSH-16 independently of the
pipeline. Afterwards a few resources are checked over REST, and the message log has one entry per message.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from hl7_adapters.mappings import supported
from hl7_adapters.message_log import ACK_CODE_SYSTEM, CODE_SYSTEM
from hl7_adapters.mllp.client import MllpClient
from hl7_adapters.v2 import parse_message
from tests.hl7_adapters.conftest import exchange, msa, samples_dir

ISSUE_EVENTS = {("ADT", t) for t in ("A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40")} | {
    ("ORU", "R01"), ("OUL", "R22"), ("ORM", "O01"), ("OML", "O21"), ("DFT", "P03"), ("RDE", "O11"),
    ("VXU", "V04")} | {("SIU", t) for t in ("S12", "S13", "S14", "S15", "S17", "S26")}


def expected_frames(accept: str, app: str, code: str) -> list[str]:
    if not accept and not app:
        return [code]
    accept_code = "CA" if code in ("AA", "AE") else "CR"

    def wanted(mode: str, ok: bool) -> bool:
        mode = mode or "AL"
        return mode == "AL" or (mode == "ER" and not ok) or (mode == "SU" and ok)

    return ([accept_code] if wanted(accept, accept_code == "CA") else []) + ([code] if wanted(app, code == "AA")
                                                                             else [])


async def _search(rest: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    response = await rest.get(url)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", []) if e.get("search", {}).get("mode") == "match"]


async def test_all_samples_over_mllp(mllp_port: int, rest: httpx.AsyncClient) -> None:
    mapped = set(supported())
    assert mapped >= ISSUE_EVENTS, f"mapping missing for {sorted(ISSUE_EVENTS - mapped)}"
    files = sorted(samples_dir().glob("*.hl7"))
    assert len(files) >= 69  # the shared README says 69; the directory holds 70
    outcomes: dict[str, str] = {}
    async with MllpClient("127.0.0.1", mllp_port, timeout_s=15) as client:
        for path in files:
            raw = path.read_bytes()
            msg = parse_message(raw)
            code = "AA" if (msg.message_type, msg.trigger_event) in mapped else "AR"
            frames = expected_frames(msg.accept_ack_type or "", msg.application_ack_type or "", code)
            acks = await exchange(client, raw, len(frames), quiet_s=0.05)
            assert [msa(a)[0] for a in acks] == frames, (path.name, [a.raw for a in acks])
            for ack in acks:
                assert msa(ack)[1] == msg.control_id
                assert ack.msh.value(5) == msg.sending_application
            if code == "AR" and acks:
                text, err = msa(acks[-1])[2], acks[-1].first("ERR")
                assert "not supported" in text, path.name
                assert err is not None
                location, err_code = (err.value(1, 1), err.value(1, 4)) if msg.version < "2.5" else \
                    (err.value(2, 1) + "-" + err.value(2, 3), err.value(3))
                assert location in ("MSH", "MSH-9") and err_code in ("200", "201"), (path.name, err.raw)
            outcomes[path.name] = code
    assert sum(1 for c in outcomes.values() if c == "AA") >= 30

    # the message log: one entry per message, raw kept, outcome recorded
    log = await _search(rest, f"Basic?code={CODE_SYSTEM}|hl7v2-message&_count=200")
    assert len(log) == len(files)
    raws = {base64.b64decode(next(x["valueBase64Binary"] for x in b["extension"] if x["url"].endswith("-raw")))
            for b in log}
    assert raws == {p.read_bytes() for p in files}
    rejected = await _search(rest, f"Basic?code={ACK_CODE_SYSTEM}|AR&_count=200")
    assert len(rejected) == sum(1 for c in outcomes.values() if c == "AR")

    # A40 asked for no acknowledgement at all (NE/NE) but was applied and logged as such
    a40 = await _search(rest, "Basic?identifier=https://infirmary.example.org/fhir/sid/hl7v2-control-id|"
                              "Ntierprise^Ntierprise Clinic^8919-40")
    assert [c["code"] for c in a40[0]["code"]["coding"] if c["system"] == ACK_CODE_SYSTEM] == ["AA"]
    old = await _search(rest, "Patient?identifier=56789")
    assert [link["type"] for link in old[0]["link"]] == ["replaced-by"] and old[0]["active"] is False

    # a few resources, field by field (the mapping tests check every mapped event in detail)
    patients = await _search(rest, "Patient?identifier=urn:infirmary:hl7v2:authority:test1|PATID1234")
    assert len(patients) == 1  # the ADT samples about this patient updated one record
    assert "EVERYMAN" in [n.get("family") for n in patients[0]["name"]] and patients[0]["gender"] == "male"
    assert patients[0]["birthDate"] == "1988-08-18"
    reports = await _search(rest, "DiagnosticReport?code=http://loinc.org|24317-0")
    assert len(reports) == 1 and reports[0]["status"] == "final"
    rbc = await _search(rest, "Observation?code=http://loinc.org|11273-0")
    assert len(rbc) == 1 and str(rbc[0]["valueQuantity"]["value"]) == "4.06"
    for rtype in ("Encounter", "ServiceRequest", "Appointment", "ChargeItem", "MedicationRequest",
                  "Immunization", "Specimen"):
        assert await _search(rest, f"{rtype}?_count=1"), f"no {rtype} was written"

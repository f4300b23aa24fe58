"""SIU (Appointment), DFT^P03 (ChargeItem), RDE^O11 (MedicationRequest) and VXU^V04 (Immunization), applied
through POST /fhir and read back field by field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hl7_adapters.mappings import MappingError, map_message
from hl7_adapters.v2 import parse_message
from tests.hl7_adapters.mappings.conftest import Feed, coding

APPOINTMENT = "urn:infirmary:hl7v2:authority:SCHApp|36996"
EVERYMAN = "urn:infirmary:hl7v2:authority:test1|PATID1234"


async def test_appointment_lifecycle(feed: Feed) -> None:
    await feed.sample("SIU-S12-01.hl7")
    patient = await feed.one("Patient", identifier=EVERYMAN)
    appointment = await feed.one("Appointment", identifier=APPOINTMENT)
    assert appointment["status"] == "booked"
    assert (appointment["start"], appointment["end"], appointment["minutesDuration"]) == (
        "2021-09-24T09:30:00+02:15", "2021-09-24T10:20:00+02:15", 50)
    assert coding(appointment["serviceType"][0]) == ("http://snomed.info/sct", "76164006")
    assert (appointment["reasonCode"], appointment["appointmentType"]) == ([{"text": "EMERGENCY"}],
                                                                          {"text": "Normal"})
    assert appointment["comment"] == "Appointment booked for emergency procedure"
    actors = [p["actor"] for p in appointment["participant"]]
    assert actors[0] == {"reference": f"Patient/{patient['id']}", "display": "ADAM A EVERYMAN"}
    assert {"identifier": {"system": "urn:oid:2.16.840.1.122848.1.30", "value": "1210"},
            "display": "Robert C GE"} in actors
    assert {"display": "GH Clinic, 055, Room01"} in actors
    assert {"display": "EVIS X12 Video Colonoscope"} in actors
    for name, status in (("SIU-S13-01.hl7", "booked"), ("SIU-S14-01.hl7", "booked"),
                         ("SIU-S26-01.hl7", "noshow"), ("SIU-S15-01.hl7", "cancelled"),
                         ("SIU-S17-01.hl7", "entered-in-error")):
        await feed.sample(name)
        appointment = await feed.one("Appointment", identifier=APPOINTMENT)
        assert appointment["status"] == status, name
    assert appointment["meta"]["versionId"] == "6"
    assert await feed.count("Appointment") == 1 and await feed.count("Patient") == 1


async def test_charges(feed: Feed) -> None:
    for _ in range(2):
        await feed.sample("DFT-P03-01.hl7")
    assert await feed.count("ChargeItem") == 2
    xray = await feed.one("ChargeItem", code="http://www.ama-assn.org/go/cpt|71045")
    assert (xray["status"], xray["occurrenceDateTime"], xray["enteredDate"]) == ("billable", "2019-11-22",
                                                                                  "2019-11-22")
    assert xray["identifier"] == [{"system": "urn:oid:2.16.840.1.122848.1.30", "value": "12345"}]
    assert xray["quantity"] == {"value": 2}
    assert xray["priceOverride"] == {"value": 100, "currency": "USD"}
    assert [coding(r) for r in xray["reason"]] == [("http://snomed.info/sct", "29857009"),
                                                  ("http://snomed.info/sct", "68235000")]
    assert coding(xray["productCodeableConcept"]) == ("http://hl7.org/fhir/sid/ndc", "0182-1061-05")
    assert xray["performer"][0]["actor"] == {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.4.6", "value": "9941339108"}, "display": "Adam Smith"}
    patient = await feed.one("Patient", identifier=EVERYMAN)
    assert xray["subject"]["reference"] == f"Patient/{patient['id']}"


async def test_medication_order(feed: Feed) -> None:
    await feed.sample("RDE-O11-01.hl7")
    order = await feed.one("MedicationRequest", identifier="1163422591")
    assert (order["status"], order["intent"], order["authoredOn"]) == ("active", "order",
                                                                       "2019-11-04T06:27:26+02:15")
    assert coding(order["medicationCodeableConcept"]) == ("http://hl7.org/fhir/sid/ndc", "0143963401")
    dosage = order["dosageInstruction"][0]
    assert dosage["timing"]["code"] == {"coding": [{
        "code": "TID", "system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"}]}
    assert dosage["route"] == {"coding": [{"code": "IV", "display": "IV Infusion",
                                           "system": "http://terminology.hl7.org/CodeSystem/v2-0162"}]}
    assert dosage["doseAndRate"] == [{
        "doseQuantity": {"value": 5, "unit": "mg/hr", "system": "http://unitsofmeasure.org", "code": "mg/h"},
        "rateQuantity": {"value": 23, "unit": "mL/hr", "system": "http://unitsofmeasure.org", "code": "mL/h"}}]
    assert dosage["text"].startswith("Titrate to BP less than 180; Starting dose is 5 mg/hr.")
    assert order["dispenseRequest"] == {"numberOfRepeatsAllowed": 12, "quantity": {"value": 3, "unit": "Bag"}}
    assert order["substitution"] == {"allowedBoolean": True}


async def test_immunizations(feed: Feed) -> None:
    await feed.sample("IZ_1_1.1_Admin_Child_Max_Message.hl7")
    shot = await feed.one("Immunization", identifier="urn:infirmary:hl7v2:authority:NDA|IZ-783274")
    patient = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:NIST%20MPI|D26376273")
    assert shot["patient"]["reference"] == f"Patient/{patient['id']}"
    assert patient["name"][0] == {"use": "official", "family": "Snow", "given": ["Madelynn", "Ainsley"]}
    assert (shot["status"], shot["occurrenceDateTime"], shot["primarySource"]) == ("completed", "2012-08-14", True)
    assert coding(shot["vaccineCode"]) == ("http://hl7.org/fhir/sid/cvx", "140")
    assert shot["doseQuantity"] == {"value": Decimal("0.5"), "unit": "MilliLiter [SI Volume Units]",
                                    "system": "http://unitsofmeasure.org", "code": "mL"}
    assert (shot["lotNumber"], shot["expirationDate"]) == ("Z0860BB", "2012-11-04")
    assert shot["manufacturer"] == {"identifier": {"system": "http://hl7.org/fhir/sid/mvx", "value": "CSL"},
                                    "display": "CSL Behring"}
    assert coding(shot["route"]) == ("http://ncithesaurus-stage.nci.nih.gov", "C28161")
    assert coding(shot["site"]) == ("http://terminology.hl7.org/CodeSystem/v2-0163", "LD")
    assert [coding(p["function"])[1] for p in shot["performer"]] == ["AP", "OP"]
    assert coding(shot["programEligibility"][0]) == ("http://terminology.hl7.org/CodeSystem/v2-0064", "V05")
    await feed.sample("VXU-V04-01.hl7")
    tenivac = await feed.one("Immunization", **{"vaccine-code": "http://hl7.org/fhir/sid/ndc|49281021588"})
    assert coding(tenivac["fundingSource"]) == ("urn:oid:2.16.840.1.114222.4.5.274", "PHC70")
    assert await feed.count("Immunization") == 2


@pytest.mark.parametrize(("event", "segment", "what"), [("DFT^P03", "FT1", "financial transaction"),
                                                        ("VXU^V04", "RXA", "vaccine administration")])
def test_a_message_without_its_repeating_segment_is_refused(event: str, segment: str, what: str) -> None:
    raw = (f"MSH|^~\\&|APP|FAC|INF|HOSP|20240105120000||{event}|C-{segment}|P|2.5.1\r"
           "PID|1||MRN1^^^HOSP^MR||Doe^Jane||19700101|F\r")
    with pytest.raises(MappingError) as caught:
        map_message(parse_message(raw))
    assert caught.value.segment == segment and caught.value.segment_index == -1 and caught.value.field is None
    assert caught.value.reason == f"{event} needs at least one {segment} ({what})"

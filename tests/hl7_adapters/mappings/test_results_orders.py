"""ORU^R01 / OUL^R22 (DiagnosticReport + Observation + Specimen) and ORM^O01 / OML^O21 (ServiceRequest), applied
through POST /fhir and read back; results find their order by placer/filler number."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from tests.hl7_adapters.mappings.conftest import FHIR, Feed, coding, sample

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DUCK = "urn:infirmary:hl7v2:authority:1|10006579"


def by_code(observations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["code"]["coding"][0]["code"]: o for o in observations}


async def test_oru_reports_observations_specimen_and_order(feed: Feed) -> None:
    await feed.sample("LAB-ORU-1.hl7")
    patient = await feed.one("Patient", identifier=DUCK)
    pid = f"Patient/{patient['id']}"
    reports = await feed.search("DiagnosticReport", subject=pid)
    assert len(reports) == 2
    hemogram = next(r for r in reports if r["code"]["coding"][0]["code"] == "24317-0")
    assert coding(hemogram["code"]) == (LOINC, "24317-0")
    assert hemogram["identifier"][0]["value"] == "82503246"  # the filler number
    assert coding(hemogram["identifier"][0]["type"]) == (V2 + "0203", "FILL")
    assert hemogram["status"] == "final"  # OBR-25 F
    order = await feed.read(hemogram["basedOn"][0]["reference"])
    assert {(i["type"]["coding"][0]["code"], i["value"]) for i in order["identifier"]} == {
        ("PLAC", "88502218"), ("FILL", "82503246")}
    assert order["subject"]["reference"] == pid
    results = by_code([await feed.read(r["reference"]) for r in hemogram["result"]])
    assert set(results) == {"11156-7", "11273-0", "20509-6", "20570-8", "11125-2"}
    rbc = results["11273-0"]
    assert rbc["valueQuantity"] == {"value": Decimal("4.06"), "unit": "tera.l-1", "system": UCUM, "code": "10*12/L"}
    assert rbc["interpretation"] == [{"coding": [{"system": INTERPRETATION, "code": "N", "display": "Normal"}]}]
    assert (rbc["status"], rbc["effectiveDateTime"]) == ("preliminary", "2014-10-06T06:27:00+07:00")
    assert rbc["subject"]["reference"] == pid
    assert rbc["basedOn"][0]["reference"] == f"ServiceRequest/{order['id']}"
    assert results["20570-8"]["valueQuantity"] == {"value": Decimal("40.1"), "unit": "%", "system": UCUM, "code": "%"}
    assert results["11156-7"]["status"] == "registered" and "valueQuantity" not in results["11156-7"]
    specimen = await feed.read(hemogram["specimen"][0]["reference"])
    assert specimen["collection"] == {"collectedDateTime": "2014-10-06T05:35:00+07:00"}
    assert (specimen["receivedTime"], specimen["type"]) == ("2014-10-06T08:21:00+07:00",
                                                            {"coding": [{"code": "BLD"}]})
    assert rbc["specimen"]["reference"] == f"Specimen/{specimen['id']}"


async def test_oru_with_coded_values_ranges_notes_and_attachments(feed: Feed) -> None:
    await feed.sample("ORU-R01-01.hl7")
    report = await feed.one("DiagnosticReport", identifier="urn:oid:2.16.840.1.114222.4.3.3.5.1.2|986")
    assert (report["status"], report["effectiveDateTime"], report["issued"]) == (
        "final", "2002-02-15T07:30:00+02:15", "2002-03-15T07:30:00+02:15")
    assert report["presentedForm"] == [{"contentType": "application/octet-stream", "url": "https://testurl.com",
                                        "title": "Serum or Plasma"}]
    culture = by_code([await feed.read(r["reference"]) for r in report["result"]])["625-4"]
    assert culture["valueCodeableConcept"] == {
        "coding": [{"system": "http://snomed.info/sct", "code": "27268008", "display": "Salmonella"}],
        "text": "Salmonella species"}
    assert culture["referenceRange"] == [{"low": {"value": 70, "unit": "beats/min", "system": UCUM, "code": "/min"},
                                          "high": {"value": 80, "unit": "beats/min", "system": UCUM,
                                                   "code": "/min"},
                                          "text": "70-80"}]
    assert culture["note"] == [{"text": "Submission of serum"}, {"text": "No Antibodies Detected"}]
    specimen = await feed.read(report["specimen"][0]["reference"])
    assert specimen["accessionIdentifier"] == {"system": "urn:oid:2.16.840.1.114222.4.3.3.5.1.2",
                                               "value": "2012999999"}
    assert specimen["collection"]["collectedPeriod"] == {"start": "2011-01-03T14:34:28-08:00",
                                                         "end": "2011-11-03T14:34:28-08:00"}
    assert specimen["collection"]["quantity"] == {"value": 40, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}
    counts = {t: await feed.count(t) for t in ("Observation", "Specimen", "DiagnosticReport", "ServiceRequest")}
    assert counts == {"Observation": 2, "Specimen": 1, "DiagnosticReport": 1, "ServiceRequest": 1}
    await feed.sample("ORU-R01-01.hl7")  # re-sent: the same resources, updated
    assert {t: await feed.count(t) for t in counts} == counts


async def test_oul_specimen_first(feed: Feed) -> None:
    await feed.sample("OUL-R22-01.hl7")
    specimen = await feed.one("Specimen", identifier="urn:infirmary:hl7v2:authority:L|2017-PAT-123456-1")
    assert specimen["type"] == {"coding": [{"system": V2 + "0487", "code": "SKBP", "display": "Biopsy, Skin"}]}
    report = await feed.one("DiagnosticReport", specimen=f"Specimen/{specimen['id']}")
    assert report["status"] == "final"
    assert [a["contentType"] for a in report["presentedForm"]] == ["application/octet-stream", *["image/jpeg"] * 3]
    assert report["presentedForm"][1]["data"] == "VGhpcyBpcyBhIEJhc2U2NCBzdHJpbmc="
    patient = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:CASECENTER%20FACILITY|00000-0000000")
    loose = await feed.search("Observation", subject=f"Patient/{patient['id']}")  # the OBX outside any order
    assert sorted(str(o.get("valueQuantity", o.get("valueCodeableConcept"))) for o in loose) == [
        "{'coding': [{'code': '160'}]}", "{'value': 60, 'unit': 'beats/min', 'system': 'http://unitsofmeasure.org', "
        "'code': '/min'}"]
    order = await feed.read(report["basedOn"][0]["reference"])
    assert ("PLAC", "5ca95f51971d414bbcb4be9ca88e9846") in {
        (i["type"]["coding"][0]["code"], i["value"]) for i in order["identifier"]}


async def test_results_link_to_an_order_placed_over_rest_and_resending_updates(feed: Feed) -> None:
    await feed.sample("ADT01-23.hl7")  # the patient first, from ADT
    patient = await feed.one("Patient", identifier=DUCK)
    order = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
             "identifier": [{"type": {"coding": [{"system": V2 + "0203", "code": "PLAC"}]},
                             "system": "https://infirmary.example/orders", "value": "88502218"}],
             "code": {"coding": [{"system": LOINC, "code": "24317-0"}]},
             "subject": {"reference": f"Patient/{patient['id']}"}}
    created = await feed.client.post("ServiceRequest", content=orjson.dumps(order), headers=FHIR)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    for _ in range(2):
        await feed.sample("LAB-ORU-1.hl7")
    report = await feed.one("DiagnosticReport", identifier="82503246")
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{order_id}"}]
    assert report["subject"]["reference"] == f"Patient/{patient['id']}"
    assert report["meta"]["versionId"] == "2"
    counts = {t: await feed.count(t) for t in ("Patient", "ServiceRequest", "DiagnosticReport", "Observation",
                                               "Specimen")}
    assert counts == {"Patient": 1, "ServiceRequest": 2, "DiagnosticReport": 2, "Observation": 10, "Specimen": 1}
    assert (await feed.read(f"Patient/{patient['id']}"))["meta"]["versionId"] == "1"  # results leave ADT's data
    # a corrected result replaces the preliminary one
    corrected = sample("LAB-ORU-1.hl7").replace(b"OBX|4|NM|20570-8^HEMATOCRIT^LN||40.1|%||N|||P",
                                                b"OBX|4|NM|20570-8^HEMATOCRIT^LN||41.30|%||H|||C")
    await feed.send(corrected)
    hematocrit = await feed.one("Observation", code=f"{LOINC}|20570-8")
    assert (hematocrit["status"], hematocrit["interpretation"][0]["coding"][0]["code"]) == ("corrected", "H")
    raw = await feed.client.get(f"Observation/{hematocrit['id']}")
    assert b'"value":41.30' in raw.content  # the digits sent are kept
    assert await feed.count("Observation") == 10


async def test_orm_orders_and_the_result_that_answers_them(feed: Feed) -> None:
    await feed.sample("LAB-ORM-1.hl7")
    order = await feed.one("ServiceRequest", identifier="88502218")
    assert (order["status"], order["intent"]) == ("active", "order")
    assert order["category"] == [{"coding": [{"system": V2 + "0074", "code": "HM"}]}]  # OBR-24
    assert coding(order["code"]) == (LOINC, "24317-0")
    assert order["authoredOn"] == "2014-10-06"  # ORC-9 without an offset (none in MSH-7 either): date only
    assert order["requester"] == {"display": "DR URO"}  # ORC-12 empty: OBR-16
    await feed.sample("LAB-ORU-1.hl7")
    report = await feed.one("DiagnosticReport", identifier="82503246")
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    patients = await feed.search("Patient", identifier=DUCK)
    assert len(patients) == 1


async def test_orm_and_oml_field_by_field(feed: Feed) -> None:
    await feed.sample("ORM-O01-03.hl7")
    ct = await feed.one("ServiceRequest", identifier="1101")
    mr = await feed.one("ServiceRequest", identifier="2203")
    assert coding(ct["code"]) == (LOINC, "24725-4") and coding(mr["code"]) == (LOINC, "24590-2")
    assert ct["authoredOn"] == "2021-10-20T11:26:00+02:15"
    assert ct["requester"]["display"] == "JONES A ORDPROVIDER"
    assert ct["reasonCode"] == [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "S06.9",
                                             "display": "TBI(traumatic brain injury"}]}]
    placer = next(i for i in ct["identifier"] if i["type"]["coding"][0]["code"] == "PLAC")
    assert placer["system"] == "urn:infirmary:hl7v2:authority:GHHPlacer"
    await feed.sample("OML-O21-01.hl7")
    lab = await feed.one("ServiceRequest", code=f"{LOINC}|57698-3")
    assert lab["category"][0] == {"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                                              "display": "Laboratory procedure"}]}
    assert lab["priority"] == "routine"  # TQ1-9 R
    assert lab["note"] == [{"text": "Urgent"}]
    assert lab["occurrenceDateTime"] == "2021-10-20T12:00:00+02:15"
    specimen = await feed.read(lab["specimen"][0]["reference"])
    assert specimen["request"] == [{"reference": f"ServiceRequest/{lab['id']}"}]
    assert lab["id"] == ct["id"]  # the OML sample reuses placer number 1101^GHHPlacer: the same order, updated
    await feed.sample("OML-O21-01.hl7")
    assert await feed.count("ServiceRequest") == 2

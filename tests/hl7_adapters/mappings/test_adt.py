"""ADT events mapped, applied through POST /fhir and read back field by field."""

from __future__ import annotations

from tests.hl7_adapters.mappings.conftest import Feed, coding

V2 = "http://terminology.hl7.org/CodeSystem/v2-"
MRN = "urn:infirmary:hl7v2:authority:test1|PATID1234"
VISIT = "urn:infirmary:hl7v2:authority:AccMng|40007716"
TYPES = ("Patient", "Encounter", "RelatedPerson", "AllergyIntolerance", "Condition", "Coverage")


async def test_a01_patient_encounter_and_attached_segments(feed: Feed) -> None:
    await feed.sample("ADT-A01-01.hl7")
    patient = await feed.one("Patient", identifier=MRN)
    pid = f"Patient/{patient['id']}"
    mr = patient["identifier"][0]
    assert (mr["system"], mr["value"], coding(mr["type"])) == (
        "urn:infirmary:hl7v2:authority:test1", "PATID1234", (V2 + "0203", "MR"))
    assert {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "PSSN123121234",
            "type": {"coding": [{"system": V2 + "0203", "code": "SS"}]}} in patient["identifier"]
    assert patient["name"][0] == {"use": "usual", "family": "EVERYMAN", "given": ["ADAM", "A"],
                                  "prefix": ["Dr."], "suffix": ["III", "MD"]}
    assert patient["name"][1] == {"use": "official", "family": "Josh", "given": ["stanley"]}
    assert patient["gender"] == "male"
    assert patient["birthDate"] == "1988-08-18"  # PID-7 198808181126+0215: a date element keeps the date
    assert patient["deceasedDateTime"] == "2008-08-25T11:16:30+01:15"
    assert patient["address"] == [{"type": "postal", "line": ["1000 Hospital Lane", "Ste. 123"],
                                   "city": "Ann Arbor", "state": "MI", "postalCode": "99999", "country": "USA"}]
    assert {"system": "phone", "value": "12121212", "use": "mobile"} in patient["telecom"]
    assert {"system": "other", "value": "1111", "use": "work"} in patient["telecom"]  # PID-14 TDD
    assert patient["maritalStatus"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}
    assert patient["multipleBirthInteger"] == 2
    assert patient["communication"][0]["language"]["coding"][1]["code"] == "eng"

    encounter = await feed.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "in-progress"
    assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PRENC",
                                  "display": "pre-admission"}
    assert encounter["subject"]["reference"] == pid
    assert encounter["period"] == {"start": "2015-02-08T11:34:19+01:10"}
    assert encounter["location"][0] == {"location": {"display": "HOMERTON UNIVER, HUH AE OMU, OMU B, Bed 03"},
                                        "status": "active"}
    attender = encounter["participant"][0]
    assert coding(attender["type"][0])[1] == "ATND"
    assert attender["individual"] == {"identifier": {"system": "urn:infirmary:hl7v2:authority:PERSONNELt",
                                                     "value": "1122334"},
                                      "display": "Dr. Mohammed Mahi Alaz JR MD"}
    assert coding(encounter["reasonCode"][0]) == ("http://snomed.info/sct", "140004")

    condition = await feed.one("Condition", subject=pid)
    assert coding(condition["code"]) == ("http://snomed.info/sct", "422504002")
    assert condition["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    assert condition["recordedDate"] == "2004-01-25T11:40:25+04:20"
    assert encounter["diagnosis"][0]["condition"]["reference"] == f"Condition/{condition['id']}"
    assert coding(encounter["diagnosis"][0]["use"])[1] == "AD"

    allergy = await feed.one("AllergyIntolerance", patient=pid)
    assert allergy["code"] == {"coding": [{"code": "P", "display": "PENICILLIN"}]}
    assert (allergy["category"], allergy["criticality"], allergy["onsetDateTime"]) == (
        ["environment"], "low", "2021-08-24")
    assert allergy["reaction"] == [{"manifestation": [{"text": "CODE16"}], "severity": "mild"}]
    assert coding(allergy["clinicalStatus"])[1] == "active"

    coverage = await feed.one("Coverage", beneficiary=pid)
    assert coverage["payor"] == [{"identifier": {"system": "urn:oid:2.16.840.1.113883.1.1", "value": "IC-1.31"},
                                  "display": "Blue Cross Blue Shield of Texas"}]
    assert (coverage["subscriberId"], coverage["period"]) == ("PN-145", {"start": "1989-10-01",
                                                                         "end": "2050-10-01"})
    assert coding(coverage["relationship"]) == (
        "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "spouse")
    assert {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                 "code": "group"}]}, "value": "PUBSUMB", "name": "SelfPay"} in coverage["class"]

    kin = await feed.one("RelatedPerson", patient=pid)
    assert kin["name"][0]["family"] == "Evan"
    assert {"use": "billing", "line": ["2222 HOME STREET", "Highway"], "city": "GREENSBORO",
            "district": "jkdha", "state": "NC", "postalCode": "27401-1020", "country": "US"} in kin["address"]
    assert kin["period"] == {"start": "2021-08-18", "end": "2021-12-18"}


async def test_visit_events_update_one_encounter(feed: Feed) -> None:
    steps = [("ADT-A04-01.hl7", "arrived"), ("ADT-A01-01.hl7", "in-progress"), ("ADT-A02-01.hl7", "in-progress"),
             ("ADT-A03-01.hl7", "finished"), ("ADT-A13-01.hl7", "in-progress"), ("ADT-A11-01.hl7", "cancelled")]
    for name, status in steps:
        await feed.sample(name)
        encounter = await feed.one("Encounter", identifier=VISIT)
        assert encounter["status"] == status, name
        if status == "finished":
            assert encounter["period"] == {"start": "2015-02-08T11:34:19+01:10",
                                           "end": "2015-02-09T11:34:19+01:10"}
            assert encounter["location"][0]["status"] == "completed"
        elif status == "in-progress":
            assert "end" not in encounter["period"]
    assert encounter["meta"]["versionId"] == str(len(steps))
    assert await feed.count("Patient") == 1
    assert await feed.count("Encounter") == 1


async def test_resending_updates_instead_of_duplicating(feed: Feed) -> None:
    await feed.sample("ADT-A08-01.hl7")
    first = {t: await feed.count(t) for t in TYPES}
    assert first == {t: 1 for t in TYPES}
    await feed.sample("ADT-A08-01.hl7")
    await feed.sample("ADT-A31-01.hl7")  # the same person again, another event: still one of each
    assert {t: await feed.count(t) for t in TYPES} == first
    patient = await feed.one("Patient", identifier=MRN)
    assert patient["meta"]["versionId"] == "3"
    encounter = await feed.one("Encounter", identifier=VISIT)
    assert encounter["status"] == "finished"  # A08 derives it: PV1-45 is set


async def test_person_events_and_older_versions(feed: Feed) -> None:
    await feed.sample("ADT-A28-01.hl7")
    assert await feed.count("Encounter") == 0  # A28/A31 carry a dummy PV1
    await feed.sample("ADT01-23.hl7")  # v2.3: CX without assigning authority, IN1 x3, DG1 in ICD-9
    duck = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:1|10006579")
    assert duck["name"] == [{"family": "DUCK", "given": ["DONALD", "D"]}]
    assert duck["birthDate"] == "1924-10-10"
    assert duck["address"][0] == {"type": "postal", "line": ["111 DUCK ST"], "city": "FOWL", "state": "CA",
                                  "postalCode": "999990000"}
    pid = f"Patient/{duck['id']}"
    assert len(await feed.search("Coverage", beneficiary=pid)) == 3
    condition = await feed.one("Condition", subject=pid)
    assert coding(condition["code"]) == ("http://hl7.org/fhir/sid/icd-9-cm", "71596")
    encounter = await feed.one("Encounter", subject=pid)
    assert encounter["class"]["code"] == "IMP"
    assert encounter["period"] == {"start": "2005-01-10T04:55:02+07:00"}
    kin = await feed.one("RelatedPerson", patient=pid)
    assert kin["relationship"] == [{"coding": [{"system": V2 + "0063", "code": "SO"}]}]


OLD = ("MSH|^~\\&|ADT|HOSP|EHR|HOSP|20240101090000+0100||ADT^A01|OLD-1|P|2.5.1\r"
       "PID|1||56789^^^BCBS^MR||Test^Old||20180205|F\r"
       "PV1|1|I|W1^1^1||||||||||||||||V-56789^^^BCBS^VN|||||||||||||||||||||||||20240101080000+0100\r"
       "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r")


async def test_a40_merge_links_patients_and_moves_references(feed: Feed) -> None:
    await feed.send(OLD)
    old = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:BCBS|56789")
    await feed.sample("ADT-A40-01.hl7")
    survivor = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:BCBS|12345")
    old = await feed.read(f"Patient/{old['id']}")
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert old["name"] == [{"family": "Test", "given": ["Old"]}]  # the record itself is kept
    assert survivor["active"] is True
    assert survivor["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
    encounter = await feed.one("Encounter", identifier="urn:infirmary:hl7v2:authority:BCBS|V-56789")
    allergy = await feed.one("AllergyIntolerance", patient=f"Patient/{survivor['id']}")
    assert encounter["subject"]["reference"] == f"Patient/{survivor['id']}"
    assert encounter["meta"]["versionId"] == "2"
    assert coding(allergy["code"]) == ("http://www.nlm.nih.gov/research/umls/rxnorm", "70618")
    assert await feed.search("Encounter", subject=f"Patient/{old['id']}") == []
    await feed.sample("ADT-A40-01.hl7")  # again: still one replaced-by link, nothing else duplicated
    old = await feed.read(f"Patient/{old['id']}")
    assert len(old["link"]) == 1
    assert await feed.count("Patient") == 2


async def test_a40_for_an_unknown_prior_patient_leaves_a_placeholder(feed: Feed) -> None:
    await feed.sample("ADT-A40-01.hl7")
    survivor = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:BCBS|12345")
    old = await feed.one("Patient", identifier="urn:infirmary:hl7v2:authority:BCBS|56789")
    assert (old["active"], old["link"]) == (False, [{"other": {"reference": f"Patient/{survivor['id']}"},
                                                     "type": "replaced-by"}])
    assert survivor["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
    assert survivor["telecom"] == [{"system": "phone", "value": "(111) 1111111"}]

"""Patient/[id]/$everything and Patient/$everything over HTTP (R4 patient-operation-everything.html)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server import jsonio
from tests.factories import make_observation, make_patient

FHIR = {"Content-Type": "application/fhir+json"}
Resource = dict[str, Any]


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def codeable(text: str) -> dict[str, str]:
    return {"text": text}


def observation(id: str, patient: str, when: str | None = "2020-06-01T10:00:00Z", **extra: Any) -> Resource:
    obs = make_observation(patient, id=id, effectiveDateTime=when, **extra)
    return {k: v for k, v in obs.items() if v is not None}


def record(patient: str, tag: str) -> list[Resource]:
    """One patient's record: a resource linked through each kind of compartment parameter."""
    p = f"Patient/{patient}"
    return [
        make_patient(id=patient, generalPractitioner=[ref(f"Practitioner/gp-{tag}")],
                     managingOrganization=ref(f"Organization/org-{tag}")),
        observation(f"obs-subject-{tag}", patient, performer=[ref(f"Practitioner/dr-{tag}")]),
        {**observation(f"obs-performer-{tag}", "nobody"), "subject": ref(f"Group/grp-{tag}"),
         "performer": [ref(p)]},  # in the compartment through performer only
        {"resourceType": "Encounter", "id": f"enc-{tag}", "status": "finished", "class": {"code": "AMB"},
         "subject": ref(p), "period": {"start": "2020-03-01", "end": "2020-03-02"},
         "location": [{"location": ref(f"Location/loc-{tag}")}]},
        {"resourceType": "AllergyIntolerance", "id": f"allergy-{tag}", "patient": ref(p),
         "recordedDate": "2020-02-02"},
        {"resourceType": "AllergyIntolerance", "id": f"allergy-recorder-{tag}", "patient": ref("Patient/nobody"),
         "recorder": ref(p)},  # through recorder: the patient reported it
        {"resourceType": "Claim", "id": f"claim-{tag}", "status": "active", "type": codeable("institutional"),
         "use": "claim", "patient": ref(p), "created": "2020-03-05", "provider": ref(f"Organization/org-{tag}"),
         "priority": codeable("normal"),
         "insurance": [{"sequence": 1, "focal": True, "coverage": ref(f"Coverage/cov-{tag}")}]},
        {"resourceType": "Coverage", "id": f"cov-{tag}", "status": "active", "beneficiary": ref(p),
         "payor": [ref(f"Organization/insurer-{tag}")]},
        {"resourceType": "CarePlan", "id": f"careplan-{tag}", "status": "active", "intent": "plan",
         "subject": ref(p)},
        {"resourceType": "CareTeam", "id": f"careteam-{tag}", "participant": [{"member": ref(p)}]},
        {"resourceType": "MedicationRequest", "id": f"medreq-{tag}", "status": "active", "intent": "order",
         "medicationReference": ref(f"Medication/med-{tag}"), "subject": ref(p), "authoredOn": "2020-04-01"},
        {"resourceType": "Device", "id": f"device-{tag}", "patient": ref(p)},
        {"resourceType": "Group", "id": f"grp-{tag}", "type": "person", "actual": True,
         "member": [{"entity": ref(p)}]},
        {"resourceType": "Basic", "id": f"basic-{tag}", "code": codeable("note"), "author": ref(p)},
        {"resourceType": "Patient", "id": f"linked-{tag}", "link": [{"other": ref(p), "type": "seealso"}]},
        {"resourceType": "Practitioner", "id": f"gp-{tag}"},
        {"resourceType": "Practitioner", "id": f"dr-{tag}"},
        {"resourceType": "Organization", "id": f"org-{tag}"},
        {"resourceType": "Organization", "id": f"insurer-{tag}"},
        {"resourceType": "Location", "id": f"loc-{tag}", "managingOrganization": ref(f"Organization/far-{tag}")},
        {"resourceType": "Organization", "id": f"far-{tag}"},  # two levels away: not included
        {"resourceType": "Medication", "id": f"med-{tag}"},
        {"resourceType": "Practitioner", "id": f"unrelated-{tag}"},
    ]


MATCHES = {"Patient/{p}", "Observation/obs-subject-{t}", "Observation/obs-performer-{t}", "Encounter/enc-{t}",
           "AllergyIntolerance/allergy-{t}", "AllergyIntolerance/allergy-recorder-{t}", "Claim/claim-{t}",
           "Coverage/cov-{t}", "CarePlan/careplan-{t}", "CareTeam/careteam-{t}", "MedicationRequest/medreq-{t}",
           "Device/device-{t}", "Group/grp-{t}", "Basic/basic-{t}", "Patient/linked-{t}"}
INCLUDES = {"Practitioner/gp-{t}", "Practitioner/dr-{t}", "Organization/org-{t}", "Organization/insurer-{t}",
            "Location/loc-{t}", "Medication/med-{t}"}


def expected(names: set[str], patient: str, tag: str) -> set[str]:
    return {n.format(p=patient, t=tag) for n in names}


async def put(client: httpx.AsyncClient, resource: Resource) -> Resource:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", content=jsonio.dumps(resource),
                         headers=FHIR)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def load(client: httpx.AsyncClient, resources: list[Resource]) -> None:
    for resource in resources:
        await put(client, resource)


@pytest.fixture
async def two_records(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await load(client, record("p1", "a") + record("p2", "b"))
    return client


def keys(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if mode is None or e["search"]["mode"] == mode]


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle["link"]:
        if link["relation"] == "next":
            return str(link["url"]).replace("http://testserver/fhir", "")
    return None


async def get(client: httpx.AsyncClient, url: str, status: int = 200) -> dict[str, Any]:
    r = await client.get(url)
    assert r.status_code == status, r.text
    return dict(r.json())


async def all_pages(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    pages = []
    next_url: str | None = url
    while next_url:
        pages.append(await get(client, next_url))
        next_url = next_link(pages[-1])
        assert len(pages) < 100
    return pages


async def test_compartment_members_and_referenced_resources(two_records: httpx.AsyncClient) -> None:
    bundle = await get(two_records, "/Patient/p1/$everything")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert keys(bundle)[0] == "Patient/p1"
    assert set(keys(bundle, "match")) == expected(MATCHES, "p1", "a")
    assert set(keys(bundle, "include")) == expected(INCLUDES, "p1", "a")
    assert len(keys(bundle)) == len(set(keys(bundle))), "each resource once"
    assert bundle["total"] == len(MATCHES)
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == sorted(modes, key=lambda m: m != "match"), "matches before includes"
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == "http://testserver/fhir/Patient/p1"
    assert entry["resource"]["meta"]["versionId"] == "1"
    assert bundle["link"][0] == {"relation": "self", "url": "http://testserver/fhir/Patient/p1/$everything"}


async def test_other_patients_data_never_included(two_records: httpx.AsyncClient) -> None:
    # p1's observation points at p2's encounter and device, and at a practitioner p2 also uses
    await load(two_records, [
        {**observation("obs-cross", "p1"), "encounter": ref("Encounter/enc-b"), "device": ref("Device/device-b"),
         "performer": [ref("Practitioner/dr-b")]},
        {"resourceType": "Device", "id": "device-free"},
        {**observation("obs-free-device", "p1"), "device": ref("Device/device-free")},
    ])
    bundle = await get(two_records, "/Patient/p1/$everything")
    got = set(keys(bundle))
    assert not any(k.endswith("-b") or k == "Patient/p2" for k in got - {"Practitioner/dr-b"}), got
    assert "Practitioner/dr-b" in keys(bundle, "include"), "a practitioner is in no patient compartment"
    assert "Device/device-free" in keys(bundle, "include"), "a device of no patient is included when referenced"
    other = await get(two_records, "/Patient/p2/$everything")
    assert set(keys(other, "match")) == expected(MATCHES, "p2", "b")
    assert not any(k.endswith("-a") for k in keys(other)), keys(other)


async def test_membership_follows_the_current_version_and_deletes(two_records: httpx.AsyncClient) -> None:
    moved = observation("obs-subject-a", "p2", performer=[ref("Practitioner/dr-a")])
    await put(two_records, moved)
    r = await two_records.delete("/CarePlan/careplan-a")
    assert r.status_code == 204
    bundle = await get(two_records, "/Patient/p1/$everything")
    assert "Observation/obs-subject-a" not in keys(bundle)
    assert "CarePlan/careplan-a" not in keys(bundle)
    assert "Observation/obs-subject-a" in keys(await get(two_records, "/Patient/p2/$everything"), "match")


async def test_unknown_patient_is_404_and_deleted_is_410(two_records: httpx.AsyncClient) -> None:
    r = await two_records.get("/Patient/nope/$everything")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    assert (await two_records.delete("/Patient/p2")).status_code == 204
    r = await two_records.get("/Patient/p2/$everything")
    assert r.status_code == 410 and r.json()["issue"][0]["code"] == "deleted"
    r = await two_records.post("/Patient/p2/$everything", headers=FHIR)
    assert r.status_code == 410


async def test_start_and_end_restrict_by_care_date(client: httpx.AsyncClient) -> None:
    await load(client, [
        make_patient(id="pd"),
        {"resourceType": "Practitioner", "id": "dr-2019"},
        {"resourceType": "Practitioner", "id": "dr-2020"},
        observation("o2019", "pd", "2019-12-31T23:00:00Z", performer=[ref("Practitioner/dr-2019")]),
        observation("o2020", "pd", "2020-07-01", performer=[ref("Practitioner/dr-2020")]),
        observation("o2021", "pd", "2021-01-01T00:00:00Z"),
        observation("o-undated", "pd", None),
        {"resourceType": "Encounter", "id": "e-open", "status": "in-progress", "class": {"code": "IMP"},
         "subject": ref("Patient/pd"), "period": {"start": "2018-05-01"}},  # ongoing: overlaps every later range
        {"resourceType": "Encounter", "id": "e-2018", "status": "finished", "class": {"code": "IMP"},
         "subject": ref("Patient/pd"), "period": {"start": "2018-05-01", "end": "2018-05-03"}},
        {"resourceType": "Coverage", "id": "cov-pd", "status": "active", "beneficiary": ref("Patient/pd"),
         "payor": [ref("Patient/pd")]},  # no care date: kept
    ])
    bundle = await get(client, "/Patient/pd/$everything?start=2020-01-01&end=2020-12-31")
    assert set(keys(bundle)) == {"Patient/pd", "Observation/o2020", "Observation/o-undated", "Encounter/e-open",
                                 "Coverage/cov-pd", "Practitioner/dr-2020"}
    assert bundle["total"] == 5
    only_start = set(keys(await get(client, "/Patient/pd/$everything?start=2021")))
    assert {"Observation/o2021", "Encounter/e-open"} <= only_start
    assert not only_start & {"Observation/o2019", "Observation/o2020", "Encounter/e-2018"}
    only_end = set(keys(await get(client, "/Patient/pd/$everything?end=2019")))
    assert {"Observation/o2019", "Encounter/e-2018", "Encounter/e-open", "Practitioner/dr-2019"} <= only_end
    assert not only_end & {"Observation/o2020", "Observation/o2021", "Practitioner/dr-2020"}
    r = await client.get("/Patient/pd/$everything?start=2021&end=2020")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["start"]
    r = await client.get("/Patient/pd/$everything?end=yesterday")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["end"]


async def test_since_keeps_what_changed(two_records: httpx.AsyncClient) -> None:
    changed = await put(two_records, observation("obs-subject-a", "p1", "2021-01-01T00:00:00Z",
                                                  performer=[ref("Practitioner/dr-a")]))
    since = changed["meta"]["lastUpdated"]
    bundle = await get(two_records, f"/Patient/p1/$everything?_since={since}")
    assert keys(bundle) == ["Observation/obs-subject-a"], "inclusive of the instant itself, nothing older"
    later = await put(two_records, {"resourceType": "Practitioner", "id": "dr-a", "active": True})
    bundle = await get(two_records, f"/Patient/p1/$everything?_since={since}")
    assert set(keys(bundle)) == {"Observation/obs-subject-a", "Practitioner/dr-a"}
    assert keys(bundle, "include") == ["Practitioner/dr-a"]
    bundle = await get(two_records, f"/Patient/p1/$everything?_since={later['meta']['lastUpdated']}")
    assert keys(bundle) == ["Practitioner/dr-a"]
    r = await two_records.get("/Patient/p1/$everything?_since=recently")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_since"]


async def test_type_filter_and_its_validation(two_records: httpx.AsyncClient) -> None:
    bundle = await get(two_records, "/Patient/p1/$everything?_type=Observation,Practitioner&_type=Encounter")
    assert set(keys(bundle)) == {"Observation/obs-subject-a", "Observation/obs-performer-a", "Encounter/enc-a",
                                 "Practitioner/gp-a", "Practitioner/dr-a"}
    assert bundle["total"] == 3
    assert "_type=Encounter%2CObservation%2CPractitioner" in bundle["link"][0]["url"]
    patient_only = await get(two_records, "/Patient/p1/$everything?_type=Patient")
    assert set(keys(patient_only)) == {"Patient/p1", "Patient/linked-a"}
    for bad in ("Observation,Unicorn", "", "observation"):
        r = await two_records.get(f"/Patient/p1/$everything?_type={bad}")
        assert r.status_code == 400, bad
        issue = r.json()["issue"][0]
        assert issue["code"] == "invalid" and issue["expression"] == ["_type"]


async def test_count_pages_every_entry_once(two_records: httpx.AsyncClient) -> None:
    whole = await get(two_records, "/Patient/p1/$everything")
    assert next_link(whole) is None
    for count in (1, 4, 15, 20):
        pages = await all_pages(two_records, f"/Patient/p1/$everything?_count={count}")
        assert all(len(p.get("entry", [])) <= count for p in pages)
        assert all(p["total"] == len(MATCHES) for p in pages)
        assert [k for p in pages for k in keys(p)] == keys(whole), f"_count={count}: same entries, same order"
        assert [k for p in pages for k in keys(p, "include")] == keys(whole, "include")
    r = await two_records.get("/Patient/p1/$everything?_count=0")
    assert r.status_code == 200 and r.json()["total"] == len(MATCHES) and "entry" not in r.json()
    r = await two_records.get("/Patient/p1/$everything?_count=many")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_count"]
    r = await two_records.get("/Patient/p1/$everything?_cursor=garbage")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_cursor"]


async def test_paging_is_stable_under_concurrent_writes(two_records: httpx.AsyncClient) -> None:
    first = await get(two_records, "/Patient/p1/$everything?_count=5")
    before = keys(await get(two_records, "/Patient/p1/$everything"))
    # between pages: a new observation arrives, an unseen one leaves, a seen one changes
    await put(two_records, observation("obs-new", "p1"))
    await two_records.delete("/Basic/basic-a")
    await put(two_records, make_patient(id="p1", active=False, generalPractitioner=[ref("Practitioner/gp-a")],
                                        managingOrganization=ref("Organization/org-a")))
    seen = keys(first)
    url = next_link(first)
    while url:
        page = await get(two_records, url)
        seen.extend(keys(page))
        url = next_link(page)
    assert len(seen) == len(set(seen)), "no entry twice"
    assert set(before) - {"Basic/basic-a"} <= set(seen), "no entry skipped"
    assert "Basic/basic-a" not in seen


async def test_post_with_parameters(two_records: httpx.AsyncClient) -> None:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDate": "2020-01-01"},
        {"name": "_type", "valueCode": "Observation"},
        {"name": "_type", "valueString": "Encounter"},
        {"name": "_count", "valueInteger": 2},
    ]}
    r = await two_records.post("/Patient/p1/$everything", content=jsonio.dumps(params), headers=FHIR)
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["entry"]) == 2 and first["total"] == 3
    nxt = next_link(first)
    assert nxt is not None and "start=2020-01-01" in nxt and "_count=2" in nxt
    rest = await all_pages(two_records, nxt)
    got = keys(first) + [k for p in rest for k in keys(p)]
    assert set(got) == {"Observation/obs-subject-a", "Observation/obs-performer-a", "Encounter/enc-a"}
    empty = await two_records.post("/Patient/p1/$everything", headers=FHIR)
    assert set(keys(empty.json())) == set(keys(await get(two_records, "/Patient/p1/$everything")))
    everyone = await two_records.post("/Patient/$everything", content=jsonio.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Patient"}]}), headers=FHIR)
    assert set(keys(everyone.json())) == {"Patient/p1", "Patient/p2", "Patient/linked-a", "Patient/linked-b"}
    bad = await two_records.post("/Patient/p1/$everything", content=jsonio.dumps(make_patient()), headers=FHIR)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["resourceType"]
    no_value = {"resourceType": "Parameters", "parameter": [{"name": "start"}]}
    bad = await two_records.post("/Patient/p1/$everything", content=jsonio.dumps(no_value), headers=FHIR)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    r = await two_records.post("/Patient/p1/$everything", content=b"start=2020", headers={
        "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await two_records.delete("/Patient/p1/$everything")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


async def test_unknown_parameters_lenient_and_strict(two_records: httpx.AsyncClient) -> None:
    bundle = await get(two_records, "/Patient/p1/$everything?_elements=id&_format=json")
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1 and outcome[0]["resource"]["issue"][0]["expression"] == ["_elements"]
    r = await two_records.get("/Patient/p1/$everything?_elements=id", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_elements"]
    r = await two_records.get("/Patient/p1/$everything?start=2020&start=2021")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["start"]


async def test_type_level_returns_every_patients_record_once(two_records: httpx.AsyncClient) -> None:
    await load(two_records, [
        {**observation("obs-shared", "p1"), "performer": [ref("Patient/p2")]},  # in both compartments
        {"resourceType": "Organization", "id": "org-orphan"},  # referenced by nobody
        {**observation("obs-no-patient", "nobody"), "subject": ref("Location/loc-a"),
         "performer": [ref("Practitioner/unrelated-a")]},  # in no compartment: neither it nor what it references
    ])
    whole = await get(two_records, "/Patient/$everything")
    wanted_matches = expected(MATCHES, "p1", "a") | expected(MATCHES, "p2", "b") | {"Observation/obs-shared"}
    wanted_includes = expected(INCLUDES, "p1", "a") | expected(INCLUDES, "p2", "b")
    assert set(keys(whole, "match")) == wanted_matches
    assert set(keys(whole, "include")) == wanted_includes
    assert len(keys(whole)) == len(set(keys(whole)))
    assert keys(whole)[:4] == ["Patient/p1", "Patient/linked-a", "Patient/p2", "Patient/linked-b"]
    pages = await all_pages(two_records, "/Patient/$everything?_count=7")
    assert [k for p in pages for k in keys(p)] == keys(whole)
    since_none = await get(two_records, "/Patient/$everything?_type=Claim")
    assert set(keys(since_none)) == {"Claim/claim-a", "Claim/claim-b"}
    dated = await get(two_records, "/Patient/$everything?end=2020-02-15&_type=Encounter,AllergyIntolerance")
    assert set(keys(dated)) == {"AllergyIntolerance/allergy-a", "AllergyIntolerance/allergy-b",
                                "AllergyIntolerance/allergy-recorder-a", "AllergyIntolerance/allergy-recorder-b"}

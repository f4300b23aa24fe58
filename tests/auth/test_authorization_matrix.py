"""The authorization matrix: every role by every path to data, with the expected answer in every cell, zero leaks of
patient B's planted markers to patient A, and exactly the expected AuditEvents for every request.

Roles: patient A and patient B (patient-context tokens from the standalone launch), a physician who treats B (an
Encounter of B's names him) but not A, a nurse who treats nobody, a billing clerk, the lab system (Backend
Services, ``system/Observation.cruds system/DiagnosticReport.cruds system/ServiceRequest.rs system/Patient.rs``),
no token, an expired token and a token for another server.  Every token comes from the authorization server.

Each cell states the HTTP status per role and, for reads, exactly which planted resources the answer contains.
Every response A gets is searched, as raw bytes, for B's marker prefix.  After every request the AuditEvents it
produced are compared with what it should have produced: one per patient whose data was read, written or
refused (outcome 0 or 4), one without a patient when a request about patient data touched none or was refused
before reading anything.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.auth.enforcement import MARK, OWNER, Hospital, event_summary, hospital, observation, ref

pytestmark = pytest.mark.asyncio(loop_scope="module")

USERS = ("A", "B", "physician", "nurse", "clerk", "lab")
UNAUTHENTICATED = ("anonymous", "expired", "wrong-aud")
ROLES = USERS + UNAUTHENTICATED

Events = list[tuple[str | None, str]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hospital]:
    async with hospital(Path(tmp_path_factory.mktemp("matrix"))) as world:
        yield world


@dataclass
class Cell:
    name: str
    method: str
    url: str
    status: dict[str, int]
    sees: dict[str, set[str]] = field(default_factory=dict)  # planted resources in the answer, exactly
    target: str | None = None  # the planted resource an instance interaction is about
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    audit: dict[str, Events] = field(default_factory=dict)  # expected events where the general rule is not it
    check: Callable[[str, httpx.Response], None] | None = None
    directory: bool = True  # whether `sees` covers the Practitioners ($everything follows the audit trail's agents)


def expand(spec: dict[str, Any]) -> dict[str, Any]:
    """{"A,B": x} → {"A": x, "B": x}."""
    out: dict[str, Any] = {}
    for roles, value in spec.items():
        for role in roles.split(","):
            out[role.strip()] = value
    return out


def seen(response: httpx.Response) -> set[str]:
    """The planted resources an answer contains (a resource, or the entries of a Bundle)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    if not isinstance(body, dict):
        return set()
    if body.get("resourceType") == "Bundle":
        keys = set()
        for entry in body.get("entry", []):
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "OperationOutcome":
                continue
            if "fullUrl" in entry:
                keys.add("/".join(entry["fullUrl"].split("/")[-2:]))
            elif resource:
                keys.add(f"{resource['resourceType']}/{resource['id']}")
        return keys & OWNER.keys()
    if "resourceType" in body and "id" in body:
        return {f"{body['resourceType']}/{body['id']}"} & OWNER.keys()
    return set()


def expected_events(cell: Cell, role: str, response: httpx.Response) -> Events:
    if role in cell.audit:
        return cell.audit[role]
    status = response.status_code
    if status == 401:
        return [(None, "4")]
    if status in (403, 404, 410):
        owner = OWNER.get(cell.target) if cell.target else None
        return [(owner, "4")]
    outcome = "0" if status < 400 else "4"
    patients = sorted({p for k in seen(response) if (p := OWNER[k]) is not None})
    return [(p, outcome) for p in patients] or [(None, outcome)]


OBS_B = {"Observation/obs-b-lab", "Observation/obs-b-vital", "Observation/obs-b-focus", "Observation/obs-b-del",
         "Observation/obs-b-cu", "Observation/obs-b-cd"}

READS: list[Cell] = [
    Cell("read B's Patient", "GET", "Patient/pat-b",
         expand({"A": 404, "B,physician,nurse,clerk,lab": 200}), target="Patient/pat-b",
         sees=expand({"B,physician,nurse,clerk,lab": {"Patient/pat-b"}})),
    Cell("read A's Patient", "GET", "Patient/pat-a",
         expand({"B": 404, "A,physician,nurse,clerk,lab": 200}), target="Patient/pat-a"),
    Cell("read B's lab result", "GET", "Observation/obs-b-lab",
         expand({"A": 404, "nurse,clerk": 403, "B,physician,lab": 200}), target="Observation/obs-b-lab",
         audit={"clerk": [(None, "4")]}),
    Cell("vread B's old version", "GET", "Observation/obs-b-lab/_history/1",
         expand({"A": 404, "nurse,clerk": 403, "B,physician,lab": 200}), target="Observation/obs-b-lab",
         audit={"clerk": [(None, "4")]},
         check=lambda role, r: r.status_code != 200 or b"MRKB-LAB-V1" in r.content),
    Cell("read B's deleted Condition", "GET", "Condition/cond-b-gone",
         expand({"A": 404, "nurse": 403, "clerk,lab": 403, "B,physician": 410}), target="Condition/cond-b-gone",
         audit=expand({"clerk,lab": [(None, "4")]})),
    Cell("read B's Invoice", "GET", "Invoice/inv-b",
         expand({"A": 404, "physician,nurse,lab": 403, "B,clerk": 200}), target="Invoice/inv-b",
         audit=expand({"physician,nurse,lab": [(None, "4")]})),
    Cell("search Observations", "GET", "Observation",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A": {"Observation/obs-a-lab"}, "B,physician": OBS_B, "nurse": set(),
                      "lab": OBS_B | {"Observation/obs-a-lab"}})),
    Cell("search B's Observations by subject", "GET", "Observation?subject=Patient/pat-b",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A,nurse": set(), "B,physician,lab": OBS_B})),
    Cell("search Patients by B's family name", "GET", "Patient?family=Baker",
         expand({"A,B,physician,nurse,clerk,lab": 200}),
         sees=expand({"A": set(), "B,physician,nurse,clerk,lab": {"Patient/pat-b"}})),
    Cell("_include B's result through A's hasMember", "GET",
         "Observation?_id=obs-a-lab&_include=Observation:has-member",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A": {"Observation/obs-a-lab"}, "B,physician,nurse": set(),
                      "lab": {"Observation/obs-a-lab", "Observation/obs-b-lab"}})),
    Cell("_revinclude B's Observation that focuses on A", "GET",
         "Patient?_id=pat-a&_revinclude=Observation:focus",
         expand({"A,B,physician,nurse,clerk,lab": 200}),
         sees=expand({"A,nurse,clerk": {"Patient/pat-a"}, "B": set(),
                      "physician,lab": {"Patient/pat-a", "Observation/obs-b-focus"}})),
    Cell("chain into B's result (has-member.code)", "GET",
         "Observation?has-member:Observation.code=2345-7",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A,B,physician,nurse": set(), "lab": {"Observation/obs-a-lab"}})),
    Cell("_has on B's lab code", "GET", "Patient?_has:Observation:subject:code=2345-7",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A,nurse": set(), "B,physician,lab": {"Patient/pat-b"}}),
         audit={"clerk": [(None, "4")]}),
    Cell("history of B's lab result", "GET", "Observation/obs-b-lab/_history",
         expand({"nurse,clerk": 403, "A,B,physician,lab": 200}), target="Observation/obs-b-lab",
         sees=expand({"A": set(), "B,physician,lab": {"Observation/obs-b-lab"}}),
         audit={"A": [("pat-b", "4")], "clerk": [(None, "4")]},
         check=lambda role, r: r.status_code != 200 or role == "A" or
         (b"MRKB-LAB-V1" in r.content and b"MRKB-LAB-V2" in r.content)),
    Cell("Observation type history", "GET", "Observation/_history",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A": {"Observation/obs-a-lab"}, "B,physician": OBS_B, "nurse": set(),
                      "lab": OBS_B | {"Observation/obs-a-lab"}})),
    Cell("system history", "GET", "_history?_count=1000",
         expand({"A,B,physician,nurse,clerk,lab": 200}),
         sees=expand({
             "A": {"Patient/pat-a", "Observation/obs-a-lab", "Condition/cond-a", "Invoice/inv-a",
                   "Practitioner/prac-doc", "Practitioner/prac-nurse"},
             "B": {"Patient/pat-b", "Encounter/enc-b", "Condition/cond-b", "Condition/cond-b-gone", "Invoice/inv-b",
                   "Practitioner/prac-doc", "Practitioner/prac-nurse"} | OBS_B,
             "physician": {"Patient/pat-a", "Patient/pat-b", "Encounter/enc-b", "Condition/cond-b",
                           "Condition/cond-b-gone", "Practitioner/prac-doc", "Practitioner/prac-nurse"} | OBS_B,
             "nurse": {"Patient/pat-a", "Patient/pat-b", "Practitioner/prac-doc", "Practitioner/prac-nurse"},
             "clerk": {"Patient/pat-a", "Patient/pat-b", "Invoice/inv-a", "Invoice/inv-b", "Practitioner/prac-doc",
                       "Practitioner/prac-nurse"},
             "lab": {"Patient/pat-a", "Patient/pat-b", "Observation/obs-a-lab"} | OBS_B})),
    Cell("B's $everything", "GET", "Patient/pat-b/$everything",
         expand({"A": 404, "B,physician,nurse,clerk,lab": 200}), target="Patient/pat-b",
         sees=expand({
             "B": {"Patient/pat-b", "Encounter/enc-b", "Condition/cond-b", "Invoice/inv-b"} | OBS_B,
             "physician": {"Patient/pat-b", "Encounter/enc-b", "Condition/cond-b"} | OBS_B,
             "nurse": {"Patient/pat-b"},
             "clerk": {"Patient/pat-b", "Invoice/inv-b"},
             "lab": {"Patient/pat-b"} | OBS_B}), directory=False),
    Cell("A's $everything", "GET", "Patient/pat-a/$everything",
         expand({"B": 404, "A,physician,nurse,clerk,lab": 200}), target="Patient/pat-a",
         sees=expand({"A": {"Patient/pat-a", "Observation/obs-a-lab", "Condition/cond-a", "Invoice/inv-a"},
                      "physician,nurse": {"Patient/pat-a"}, "clerk": {"Patient/pat-a", "Invoice/inv-a"},
                      "lab": {"Patient/pat-a", "Observation/obs-a-lab"}}), directory=False),
    Cell("compartment search of B's Observations", "GET", "Patient/pat-b/Observation",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         sees=expand({"A,nurse": set(), "B,physician,lab": OBS_B})),
    Cell("_summary=count of Observations", "GET", "Observation?_summary=count",
         expand({"clerk": 403, "A,B,physician,nurse,lab": 200}),
         check=lambda role, r: r.status_code != 200 or r.json()["total"] == {
             "A": 1, "B": 6, "physician": 6, "nurse": 0, "lab": 7}[role]),
]


def _batch(*urls: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch",
            "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}


def _batch_check(role: str, r: httpx.Response) -> None:
    if r.status_code != 200:
        return
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == {"A": ["404", "404"], "B": ["200", "200"], "physician": ["200", "200"],
                        "nurse": ["200", "403"], "clerk": ["200", "403"], "lab": ["200", "200"]}[role]


BATCH = Cell("batch reading B's data", "POST", "", expand({"A,B,physician,nurse,clerk,lab": 200}),
             body=_batch("Patient/pat-b", "Observation/obs-b-lab"), check=_batch_check,
             audit=expand({
                 # the batch itself (no patient) and one event per GET entry
                 "A": [(None, "0"), ("pat-b", "4"), ("pat-b", "4")],
                 "B,physician,lab": [(None, "0"), ("pat-b", "0"), ("pat-b", "0")],
                 "nurse": [(None, "0"), ("pat-b", "0"), ("pat-b", "4")],
                 "clerk": [(None, "0"), ("pat-b", "0"), (None, "4")],
             }))


def _transaction(tag: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000001",
         "resource": observation("x", "pat-b", "laboratory", f"tx-{tag}-b"),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:0a0a0a0a-0000-4000-8000-000000000002",
         "resource": observation("y", "pat-a", "laboratory", f"tx-{tag}-a"),
         "request": {"method": "POST", "url": "Observation"}},
    ]}


WRITES: list[Cell] = [
    Cell("create an Observation for B", "POST", "Observation",
         expand({"A,nurse,clerk": 403, "B,physician,lab": 201}),
         body=observation("new", "pat-b", "laboratory", "created"),
         audit=expand({"A,nurse": [("pat-b", "4")], "B,physician,lab": [("pat-b", "0")], "clerk": [(None, "4")]})),
    Cell("transaction with an entry for A and one for B", "POST", "",
         expand({"A,B,physician,nurse,clerk": 403, "lab": 200}), body=_transaction("tx"),
         audit=expand({"A,nurse": [("pat-b", "4")], "B,physician": [("pat-a", "4")], "clerk": [(None, "4")],
                       "lab": [("pat-a", "0"), ("pat-b", "0")]})),
    Cell("update B's lab result", "PUT", "Observation/obs-b-lab",
         expand({"A,nurse,clerk": 403, "B,physician,lab": 200}), target="Observation/obs-b-lab",
         body=observation("obs-b-lab", "pat-b", "laboratory", "MRKB-LAB-V3", "2345-7",
                          identifier=[{"system": "urn:test", "value": "obs-b-ident"}]),
         audit={"clerk": [(None, "4")]}),
    Cell("patch B's lab result", "PATCH", "Observation/obs-b-lab",
         expand({"A": 404, "nurse,clerk": 403, "B,physician,lab": 200}), target="Observation/obs-b-lab",
         body=[{"op": "replace", "path": "/status", "value": "amended"}],
         headers={"Content-Type": "application/json-patch+json"}, audit={"clerk": [(None, "4")]}),
    Cell("conditional create matching B's identifier", "POST", "Observation",
         expand({"A": 201, "B,physician,nurse,clerk": 403, "lab": 200}),
         body=observation("c", "pat-a", "laboratory", "cond-create", identifier=[
             {"system": "urn:test", "value": "a-ci-ident"}]),
         headers={"If-None-Exist": "identifier=urn:test|obs-b-ident"},
         audit=expand({"A": [("pat-a", "0")], "B,physician,nurse": [("pat-a", "4")], "clerk": [(None, "4")],
                       "lab": [("pat-b", "0")]}),
         check=lambda role, r: r.status_code != 201 or r.json()["subject"] == ref("Patient/pat-a")),
    Cell("conditional delete matching B's identifier", "DELETE", "Observation?identifier=urn:test|obs-b-cd-ident",
         expand({"A,physician,B,lab": 204, "nurse,clerk": 403}),
         audit=expand({"A,physician,lab": [(None, "0")], "nurse,clerk": [(None, "4")], "B": [("pat-b", "0")]})),
    Cell("delete B's Observation", "DELETE", "Observation/obs-b-del",
         expand({"A": 204, "nurse": 403, "clerk": 403, "B,physician,lab": 204}), target="Observation/obs-b-del",
         audit=expand({"A": [("pat-b", "4")], "nurse,clerk": [(None, "4")], "B": [("pat-b", "0")],
                       "physician,lab": [(None, "0")]})),
    Cell("conditional update matching B's identifier", "PUT", "Observation?identifier=urn:test|obs-b-cu-ident",
         expand({"A": 201, "B,physician,nurse,clerk": 403, "lab": 200}),
         body={k: v for k, v in observation("x", "pat-a", "laboratory", "cond-update", identifier=[
             {"system": "urn:test", "value": "a-cu-ident"}]).items() if k != "id"},
         audit=expand({"A": [("pat-a", "0")], "B,physician,nurse": [("pat-a", "4")], "clerk": [(None, "4")],
                       "lab": [("pat-a", "0")]})),
]

# the order in which roles take their turn at a write (A first: B's resources still exist when A tries)
WRITE_ORDER = ("anonymous", "expired", "wrong-aud", "A", "nurse", "clerk", "B", "physician", "lab")


async def _request(h: Hospital, role: str, cell: Cell) -> httpx.Response:
    async with h.http(role) as http:
        headers = dict(cell.headers)
        content = None
        if cell.body is not None:
            content = json.dumps(cell.body).encode()
            headers.setdefault("Content-Type", "application/fhir+json")
        return await http.request(cell.method, cell.url, content=content, headers=headers)


async def _run(h: Hospital, role: str, cell: Cell) -> None:
    before = await h.audit_ids()
    response = await _request(h, role, cell)
    body = response.content
    if role in UNAUTHENTICATED:
        assert response.status_code == 401, (cell.name, role, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["issue"][0]["code"] == "login"
    else:
        assert response.status_code == cell.status[role], (cell.name, role, response.status_code, response.text)
        if response.status_code == 403:
            assert response.json()["issue"][0]["code"] == "forbidden"
    if role in cell.sees and response.status_code < 300:
        got = seen(response)
        if not cell.directory:
            got = {k for k in got if not k.startswith("Practitioner/")}
        assert got == cell.sees[role], (cell.name, role, sorted(got))
    if cell.check is not None and role not in UNAUTHENTICATED:
        cell.check(role, response)
    if role == "A":  # zero leaks of B's data to A, through any path
        assert MARK not in body, (cell.name, body)
    # exactly the expected AuditEvents
    new = await h.audit_events(await h.audit_ids() - before)
    expected = expected_events(cell, role, response)
    assert Counter(event_summary(e) for e in new) == Counter(expected), (cell.name, role, [
        (event_summary(e), e["subtype"], e.get("entity")) for e in new])
    for event in new:
        _check_event(h, role, event)


def _check_event(h: Hospital, role: str, event: dict[str, Any]) -> None:
    requestor = event["agent"][0]
    assert requestor["requestor"] is True
    assert requestor["network"]["address"] == "127.0.0.1"
    assert event["type"]["code"] == "rest" and event["recorded"]
    text = json.dumps(event)
    for token in h.tokens.values():  # never a token in the audit trail
        assert not token or token not in text
    if role in UNAUTHENTICATED:
        assert requestor["who"] == {"display": "unauthenticated request"}
    elif role == "lab":
        assert requestor["who"]["identifier"]["value"] == "lab"
    else:
        assert requestor["altId"] == {"A": "u-alice", "B": "u-bob", "physician": "u-doc", "nurse": "u-nurse",
                                      "clerk": "u-clerk"}[role]
        assert event["agent"][1]["who"]["identifier"]["value"] == "app"
    if role == "physician":
        assert requestor["who"]["reference"] == "Practitioner/prac-doc"
    if role in ("A", "B"):
        assert "reference" not in requestor["who"]  # a patient's own attempts stay out of their compartment


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("cell", [*READS, BATCH], ids=lambda c: c.name)
async def test_reads(h: Hospital, cell: Cell, role: str) -> None:
    await _run(h, role, cell)


async def test_patients_see_only_their_own_audit_trail(h: Hospital) -> None:
    """Runs after the reads: both patients' records have been read by others by now."""
    for role, own, other in (("A", b"pat-a", b"pat-b"), ("B", b"pat-b", b"pat-a")):
        async with h.http(role) as http:
            response = await http.get("AuditEvent?_count=1000")
        assert response.status_code == 200
        events = [e["resource"] for e in response.json().get("entry", [])]
        assert events and all(any(x.get("what", {}).get("reference") == f"Patient/{own.decode()}"
                                  for x in e["entity"]) for e in events)
        assert other not in response.content and (role == "B" or MARK not in response.content)
        # who accessed my record: the physician's read of A's Patient is there, by Practitioner reference
        assert b"Practitioner/prac-doc" in response.content
    for role in ("physician", "nurse", "clerk", "lab"):
        async with h.http(role) as http:
            assert (await http.get("AuditEvent")).status_code == 403


@pytest.mark.parametrize("cell", WRITES, ids=lambda c: c.name)
async def test_writes(h: Hospital, cell: Cell) -> None:
    for role in WRITE_ORDER:
        await _run(h, role, cell)


async def test_writes_left_no_trace_where_refused(h: Hospital) -> None:
    fhir = h.app.state.fhir
    # the refused transactions wrote nothing; the lab's went through whole
    values = []
    for v in (await h.app.state.fhir.repo.search(_all("Observation"))).matches:
        assert v.body is not None
        values.append(json.loads(v.body).get("valueString"))
    assert values.count("tx-tx-a") == 1 and values.count("tx-tx-b") == 1
    # A's conditional create and update did not touch B's resources
    lab = json.loads((await fhir.repo.read("Observation", "obs-b-lab")).body)
    assert lab["subject"] == ref("Patient/pat-b") and lab["identifier"][0]["value"] == "obs-b-ident"
    assert (await fhir.repo.read("Observation", "obs-b-cd")).deleted  # deleted by B, not A
    assert (await fhir.repo.read("Observation", "obs-b-del")).deleted


def _all(rtype: str) -> Any:
    from fhir_server.search.model import SearchQuery
    from fhir_server.storage.base import SearchRequest

    return SearchRequest(SearchQuery(rtype), 1000, total=False)


# -- Bulk export -------------------------------------------------------------------------------------------------

EXPORTS = expand({"A,B,nurse,clerk": ("Patient/$export", 202), "physician": ("Patient/$export", 202),
                  "lab": ("$export", 202)})


@pytest.mark.parametrize("role", ROLES)
async def test_bulk_export(h: Hospital, role: str) -> None:
    before = await h.audit_ids()
    path, status = EXPORTS.get(role, ("Patient/$export", 401))
    requests = 0
    async with h.http(role) as http:
        kick = await http.get(path, headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        requests += 1
        assert kick.status_code == status, kick.text
        files: dict[str, bytes] = {}
        if status == 202:
            poll = kick.headers["content-location"]
            for _ in range(200):
                done = await http.get(poll)
                requests += 1
                if done.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            manifest = done.json()
            assert manifest["requiresAccessToken"] is True
            for output in manifest["output"]:
                got = await http.get(output["url"])
                requests += 1
                assert got.status_code == 200
                files[output["type"]] = got.content
            # nobody else may poll or download it
            async with h.http("B" if role != "B" else "A") as other:
                assert (await other.get(poll)).status_code == 404
                for output in manifest["output"]:
                    assert (await other.get(output["url"])).status_code == 404
                requests += 1 + len(manifest["output"])
    exported = {t: {json.loads(line)["id"] for line in data.splitlines()} for t, data in files.items()}
    if role == "A":
        assert all(MARK not in data for data in files.values())
        assert exported["Patient"] == {"pat-a"} and "obs-a-lab" in exported["Observation"]
        # obs-b-cu is A's now (the lab's conditional update moved it), none of B's is there
        assert not any(i.startswith("obs-b") for i in exported["Observation"] - {"obs-b-cu"})
    if role == "clerk":
        assert set(exported) <= {"Patient", "RelatedPerson", "Account", "ChargeItem", "Claim", "ClaimResponse",
                                 "Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse",
                                 "EnrollmentRequest", "ExplanationOfBenefit", "Invoice"}
        assert {"inv-a", "inv-b"} <= exported["Invoice"]
    if role == "nurse":
        assert "Observation" not in exported and exported["Patient"] == {"pat-a", "pat-b"}
    if role == "physician":
        assert exported["Patient"] == {"pat-a", "pat-b"} and "obs-a-lab" not in exported.get("Observation", set())
    if role == "lab":
        assert set(exported) <= {"Observation", "DiagnosticReport", "ServiceRequest", "Patient"}
    # one AuditEvent per request (kick-off, polls, downloads), none about a patient: an export is audited as a
    # whole, not per patient
    new = await h.audit_events(await h.audit_ids() - before)
    assert len(new) == requests
    assert all(event_summary(e)[0] is None for e in new)


async def test_export_of_a_forbidden_type_is_refused(h: Hospital) -> None:
    async with h.http("clerk") as http:
        r = await http.get("Patient/$export?_type=Observation", headers={"Prefer": "respond-async"})
    assert r.status_code == 403 and r.json()["issue"][0]["expression"] == ["_type"]
    async with h.http("lab") as http:  # the lab's scopes do not cover Conditions
        r = await http.get("$export?_type=Condition", headers={"Prefer": "respond-async"})
    assert r.status_code == 403

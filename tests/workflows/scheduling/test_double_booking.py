"""No double booking: 50 concurrent $book calls on one Slot against a running server (two worker processes sharing
the store) — exactly one succeeds, the other 49 get 409 with an OperationOutcome, and one Appointment exists."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

BOOKERS = 50


@pytest.fixture
def two_worker_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "live", workers=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _seed(base: str) -> str:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    resources = [
        {"resourceType": "Practitioner", "id": "prac-1", "name": [{"family": "Busy"}]},
        {"resourceType": "Schedule", "id": "sched-1", "actor": [{"reference": "Practitioner/prac-1"}]},
        {"resourceType": "Slot", "id": "slot-1", "schedule": {"reference": "Schedule/sched-1"}, "status": "free",
         "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
         "end": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        *({"resourceType": "Patient", "id": f"pat-{i}", "name": [{"family": f"Booker{i}"}]} for i in range(5)),
    ]
    with httpx.Client(base_url=base, timeout=30) as http:
        for resource in resources:
            response = http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert response.status_code in (200, 201), response.text
    return "Slot/slot-1"


async def test_fifty_concurrent_bookings_of_one_slot(two_worker_server: LiveServer) -> None:
    slot = _seed(two_worker_server.base)
    limits = httpx.Limits(max_connections=BOOKERS)
    async with httpx.AsyncClient(base_url=two_worker_server.base, timeout=60, limits=limits) as http:
        async def book(i: int) -> httpx.Response:
            body = {"resourceType": "Parameters", "parameter": [
                {"name": "slot", "valueReference": {"reference": slot}},
                {"name": "patient", "valueReference": {"reference": f"Patient/pat-{i % 5}"}}]}
            return await http.post("/Appointment/$book", json=body)

        responses = await asyncio.gather(*(book(i) for i in range(BOOKERS)))
        statuses = Counter(r.status_code for r in responses)
        assert statuses == Counter({201: 1, 409: BOOKERS - 1}), statuses
        for response in responses:
            if response.status_code == 409:
                outcome = response.json()
                assert outcome["resourceType"] == "OperationOutcome"
                assert outcome["issue"][0]["code"] == "conflict"
                assert outcome["issue"][0]["expression"] == ["slot"]
        winner = next(r for r in responses if r.status_code == 201).json()
        appointment = next(p["resource"] for p in winner["parameter"] if p["name"] == "appointment")

        found = (await http.get("/Appointment", params={"slot": slot, "_total": "accurate"})).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == appointment["id"]
        stored = (await http.get(f"/{slot}")).json()
        assert stored["status"] == "busy" and stored["meta"]["versionId"] == "2"
        history = (await http.get(f"/{slot}/_history")).json()
        assert len(history["entry"]) == 2  # free, then busy: no loser wrote a version

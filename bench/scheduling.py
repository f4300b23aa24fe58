"""Scheduling at hospital scale: ``Appointment/$find`` latency over 200 practitioners x 90 days of slots, and
``$book`` throughput, against a running server.

1. Generates the data set with the real slot-generation code (the function the ``scheduling.generate_slots`` job
   runs), in-process on the store: the specialties, ``--practitioners`` Practitioners each with a PractitionerRole
   (specialties in turn, every day 09:00-17:00, 30-minute slots: 16 a day) and ``--days`` days of Slots —
   200 x 90 x 16 = 288,000 Slots by default.  Reports the generation rate.
2. Starts ``infirmary serve`` on that store (auth off, loopback; bench/auth_overhead.py measures tokens), waits until
   its start-up jobs are done (the daily regeneration runs once at start and finds nothing to do), then measures
   ``$find`` one request at a time (p50/p95/p99) for three kinds of query, 20 proposals a page:
   by specialty over the default window (14 days from a random day), by specialty over one day, and by
   practitioner.
3. ``$book`` throughput: ``--bookings`` distinct free slots booked by ``--clients`` concurrent clients
   (each booking is one atomic write of the Slot and the Appointment).

    python bench/scheduling.py [--practitioners 200] [--days 90] [--data-dir DIR (kept, reused when present)]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_crud import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server import jsonio  # noqa: E402
from fhir_server.settings import SchedulingSettings, Settings  # noqa: E402
from fhir_server.workflows.scheduling import Scheduling  # noqa: E402
from fhir_server.workflows.scheduling.specialties import SPECIALTIES, seed_specialties, specialty  # noqa: E402

CODES = [code for _, code, _, _ in SPECIALTIES[:10]]
SLUGS = [slug for slug, _, _, _ in SPECIALTIES[:10]]


def _role(i: int) -> dict[str, object]:
    return {
        "resourceType": "PractitionerRole", "id": f"role-{i}", "active": True,
        "practitioner": {"reference": f"Practitioner/prac-{i}"},
        "location": [{"reference": f"Location/loc-{i % 5}"}],
        "healthcareService": [{"reference": f"HealthcareService/hs-{SLUGS[i % 10]}"}],
        "specialty": [specialty(CODES[i % 10])],
        "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                           "availableStartTime": "09:00:00", "availableEndTime": "17:00:00"}],
    }


async def generate(data_dir: Path, practitioners: int, days: int) -> None:
    from fhir_server.app import create_app

    settings = Settings(data_dir=data_dir, scheduling=SchedulingSettings(horizon_days=days))
    app = create_app(settings)
    context = app.state.fhir
    await context.repo.open()
    try:
        if await context.repo.count("Slot") > 0:
            print(f"store {data_dir} already has {await context.repo.count('Slot')} slots: reused")
            return
        await seed_specialties(context.resources)
        for i in range(5):
            loc = {"resourceType": "Location", "id": f"loc-{i}", "status": "active", "name": f"Clinic {i}"}
            await context.resources.update("Location", loc["id"], jsonio.dumps(loc))
        for i in range(practitioners):
            prac = {"resourceType": "Practitioner", "id": f"prac-{i}", "name": [{"family": f"Doctor{i}"}]}
            await context.resources.update("Practitioner", prac["id"], jsonio.dumps(prac))
            await context.resources.update("PractitionerRole", f"role-{i}", jsonio.dumps(_role(i)))
        scheduling = Scheduling.of(context.resources, context.search, settings.scheduling, None)
        started = time.perf_counter()
        created = 0
        for i in range(practitioners):
            created += (await scheduling.generator.generate(f"role-{i}")).created
            if (i + 1) % 20 == 0:
                rate = created / (time.perf_counter() - started)
                print(f"  {i + 1}/{practitioners} roles, {created} slots, {rate:,.0f} slots/s", flush=True)
        took = time.perf_counter() - started
        print(f"generated {created:,} slots in {took:.1f} s ({created / took:,.0f} slots/s)")
    finally:
        await context.repo.close()


def wait_idle(pid: int, quiet_s: float = 2.0, limit_s: float = 600) -> float:
    """Wait until the server process uses (almost) no CPU for ``quiet_s``; returns the seconds waited."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu()
        time.sleep(quiet_s)
        if cpu() - before < 0.05 * quiet_s:
            break
    return time.monotonic() - started


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
    return (f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p95 {at(0.95):6.1f} ms  p99 {at(0.99):6.1f} ms  "
            f"(n={len(ordered)})")


def measure_find(base: str, practitioners: int, days: int, n: int) -> list[str]:
    rng = random.Random(7)
    today = datetime.now(UTC).date()
    kinds = {
        "specialty, 14-day window": lambda: {"specialty": rng.choice(CODES),
                                             "start": str(today + timedelta(days=rng.randrange(days - 14)))},
        "specialty, one day": lambda: (lambda d: {"specialty": rng.choice(CODES), "start": str(d),
                                                  "end": str(d + timedelta(days=1))})(
            today + timedelta(days=rng.randrange(1, days - 1))),
        "practitioner, 14-day window": lambda: {"practitioner": f"Practitioner/prac-{rng.randrange(practitioners)}",
                                                "start": str(today + timedelta(days=rng.randrange(days - 14)))},
    }
    lines = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for name, params in kinds.items():
            for _ in range(20):  # warm-up
                http.get("/Appointment/$find", params=params())
            samples = []
            for _ in range(n):
                query = params()
                started = time.perf_counter()
                response = http.get("/Appointment/$find", params=query)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                assert len(response.json().get("entry", [])) == 20, (query, len(response.json().get("entry", [])))
            lines.append(f"$find {name:<28} {percentiles(samples)}")
    return lines


async def measure_book(base: str, bookings: int, clients: int, days: int) -> str:
    rng = random.Random(11)
    today = datetime.now(UTC).date()
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        await http.put("/Patient/bench-patient", json={"resourceType": "Patient", "id": "bench-patient"})
        slots: set[str] = set()
        while len(slots) < bookings:
            start = today + timedelta(days=rng.randrange(1, days - 1))
            found = (await http.get("/Appointment/$find", params={"start": str(start), "_count": "100"})).json()
            slots.update(e["resource"]["slot"][0]["reference"] for e in found.get("entry", []))
        chosen = sorted(slots)[:bookings]
        queue: asyncio.Queue[str] = asyncio.Queue()
        for slot in chosen:
            queue.put_nowait(slot)
        statuses: list[int] = []

        async def client() -> None:
            while not queue.empty():
                slot = queue.get_nowait()
                body = {"resourceType": "Parameters", "parameter": [
                    {"name": "slot", "valueReference": {"reference": slot}},
                    {"name": "patient", "valueReference": {"reference": "Patient/bench-patient"}}]}
                statuses.append((await http.post("/Appointment/$book", json=body)).status_code)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        took = time.perf_counter() - started
    ok = statuses.count(201)
    return (f"$book {bookings} distinct slots, {clients} clients: {ok / took:,.0f} bookings/s "
            f"({ok} booked, {len(statuses) - ok} failed, {took:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--practitioners", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--finds", type=int, default=300, help="$find requests per kind of query")
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the store here (reused when present)")
    args = parser.parse_args()
    os.environ["FHIR_AUTH__ENABLED"] = "false"
    os.environ["FHIR_HL7__ENABLED"] = "false"  # no MLLP listener (port 2575 may be taken)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="infirmary-sched-"))
    try:
        asyncio.run(generate(data_dir, args.practitioners, args.days))
        port = free_port()
        os.environ["FHIR_SCHEDULING__HORIZON_DAYS"] = str(args.days)
        proc = start_server(data_dir, port, 1)
        try:
            print(f"server idle after {wait_idle(proc.pid):.0f} s of start-up jobs")
            base = f"http://127.0.0.1:{port}/fhir"
            for line in measure_find(base, args.practitioners, args.days, args.finds):
                print(line, flush=True)
            print(asyncio.run(measure_book(base, args.bookings, args.clients, args.days)))
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

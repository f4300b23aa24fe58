"""``Patient/[id]/$everything`` latency over HTTP (issue 4, must-show 5): the whole result, every page.

The patient: the largest Synthea sample (Hallie Hoeger, 700 entries) and the clinical resources of a second
sample (Shameka Marvin, 301 entries) merged onto one patient — both cloned with fresh ids, the second sample's
references to its own patient pointed at the first, its Patient dropped: **1,000 resources** (1 Patient, 993
clinical resources, 3 Organizations, 3 Practitioners), all of them in the patient's ``$everything`` (994
matches, 6 includes).  Beside it,
``--others`` more Synthea patients (other people's data, which must stay out) are loaded.  Loading is individual
``PUT``s over HTTP, references resolved to ``Type/id``, 4 at a time.

    python bench/everything.py                                  # fresh server and store in a temp dir
    python bench/everything.py --base-url http://host:8080/fhir # load the merged patient into a running server
    python bench/everything.py --base-url http://host:8080/fhir --patient ID   # measure an existing patient

Each repetition fetches the first page and follows ``next`` links to the end (the time is the whole result,
bodies received in full; the next link is read from the head of each page, the Bundle's ``link`` comes before
its entries).  Reported: p50/p90/p99 of the whole result, pages, entries and bytes per result, per page size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthea
from _server import serve

MAIN = "Hallie_Hoeger_62a0b57c-4129-43d9-b787-bcf7ad4fa654.json"
SECOND = "Shameka_Marvin_55924ad5-6d05-4ece-9302-a692ce478536.json"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
_NEXT = re.compile(rb'"relation"\s*:\s*"next"\s*,\s*"url"\s*:\s*"([^"]+)"')


def merged_patient() -> tuple[str, list[dict[str, Any]]]:
    """The patient id and its 1,000 resources (fresh ids)."""
    samples = dict(synthea.sample_bundles())
    main = synthea.resources_of(synthea._Template(samples[MAIN], resolved=True).render(0))
    second = synthea.resources_of(synthea._Template(samples[SECOND], resolved=True).render(0))
    patient_id = next(r["id"] for r in main if r["resourceType"] == "Patient")
    other_id = next(r["id"] for r in second if r["resourceType"] == "Patient")
    text = json.dumps([r for r in second if r["resourceType"] != "Patient"])
    moved = json.loads(text.replace(f"Patient/{other_id}", f"Patient/{patient_id}"))
    return patient_id, main + moved


def other_patients(count: int) -> list[dict[str, Any]]:
    return [r for bundle in synthea.clones(count, resolved=True) for r in synthea.resources_of(bundle)]


async def put_all(base: str, resources: list[dict[str, Any]], concurrency: int = 4) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for resource in resources:
        queue.put_nowait(resource)
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            r = queue.get_nowait()
            reply = await client.put(f"{base}/{r['resourceType']}/{r['id']}", content=json.dumps(r),
                                     headers=FHIR_JSON)
            if reply.status_code not in (200, 201):
                failures.append(f"{r['resourceType']}: {reply.status_code} {reply.text[:200]}")

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    print(f"loaded {len(resources) - len(failures):,} resources in {elapsed:.1f} s "
          f"({len(resources) / elapsed:,.0f}/s), {len(failures)} rejected")
    for failure in failures[:5]:
        print("  rejected", failure)
    if failures:
        raise SystemExit("some resources were rejected")


def whole_result(client: httpx.Client, url: str) -> tuple[float, list[bytes]]:
    """Seconds to fetch every page, and the pages."""
    pages = []
    started = time.perf_counter()
    next_url: str | None = url
    while next_url:
        reply = client.get(next_url)
        reply.raise_for_status()
        body = reply.content
        pages.append(body)
        found = _NEXT.search(body, 0, body.find(b'"entry"') if b'"entry"' in body else len(body))
        next_url = found.group(1).decode() if found else None
    return time.perf_counter() - started, pages


def describe(pages: list[bytes]) -> tuple[int, int, int, int]:
    """Entries, matches, includes and bytes of one whole result (checks each resource appears once)."""
    seen: set[str] = set()
    matches = includes = 0
    for page in pages:
        for entry in json.loads(page).get("entry", []):
            if entry["fullUrl"] in seen:
                raise SystemExit(f"{entry['fullUrl']} appears twice")
            seen.add(entry["fullUrl"])
            mode = entry["search"]["mode"]
            matches += mode == "match"
            includes += mode == "include"
    return len(seen), matches, includes, sum(len(p) for p in pages)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(base: str, patient: str, repetitions: int, counts: list[str]) -> None:
    with httpx.Client(timeout=120) as client:
        for count in counts:
            url = f"{base}/Patient/{patient}/$everything" + (f"?_count={count}" if count else "")
            _, pages = whole_result(client, url)  # warm-up, and the shape of the result
            entries, matches, includes, size = describe(pages)
            times = []
            for _ in range(repetitions):
                seconds, _ = whole_result(client, url)
                times.append(seconds * 1000)
            label = f"_count={count}" if count else "default page size"
            print(f"$everything ({label}): {entries} entries ({matches} match, {includes} include), "
                  f"{len(pages)} page(s), {size / 1e6:.2f} MB; {repetitions} repetitions: "
                  f"p50 {statistics.median(times):.1f} ms, p90 {percentile(times, 90):.1f} ms, "
                  f"p99 {percentile(times, 99):.1f} ms, min {min(times):.1f} ms, "
                  f"{entries / (statistics.median(times) / 1000):,.0f} resources/s at p50")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    return serve(data_dir, port), f"http://127.0.0.1:{port}/fhir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running server's FHIR base (default: start one on a temp store)")
    parser.add_argument("--patient", help="measure this existing patient (default: load the merged patient)")
    parser.add_argument("--others", type=int, default=20, help="other Synthea patients loaded beside it")
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--count", action="append",
                        help="page sizes to measure ('' = the server default); default: '' and 50")
    args = parser.parse_args()
    counts = args.count if args.count is not None else ["", "50"]
    proc = None
    tmp = None
    base = args.base_url.rstrip("/") if args.base_url else None
    try:
        if base is None:
            tmp = tempfile.TemporaryDirectory(prefix="infirmary-everything-")
            proc, base = start_server(Path(tmp.name))
        patient = args.patient
        if patient is None:
            patient, resources = merged_patient()
            others = other_patients(args.others) if args.others else []
            print(f"patient {patient}: {len(resources)} resources; {args.others} other patients: "
                  f"{len(others):,} resources")
            asyncio.run(put_all(base, others + resources))
        measure(base, patient, args.repetitions, counts)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()

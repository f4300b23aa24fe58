"""Bulk Data export check and timing: a system-level ``$export`` against a running server, run to completion.

Kicks off ``GET {base}/$export`` (``Prefer: respond-async``), polls the status URL as ``Retry-After`` says,
downloads every output file, counts the resources per type (each line must parse, have the manifest's type and
an id not seen before), and compares them with the store's own counts (``GET {base}/{type}?_summary=count`` for
every type of the CapabilityStatement).  Prints the export time, resources/s, the download time and a per-type
table; exits 1 when any count differs (run it on a server nobody writes to meanwhile).

    python bench/bulk_export.py http://127.0.0.1:8080/fhir [--type Patient,Observation] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import orjson

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


async def run_export(client: httpx.AsyncClient, base: str, types: str | None, limit_s: float) -> tuple[
        str, dict[str, Any], float]:
    params = {"_type": types} if types else {}
    r = await client.get(f"{base}/$export", params=params, headers=ASYNC)
    if r.status_code != 202:
        raise SystemExit(f"kick-off answered {r.status_code}: {r.text[:500]}")
    status_url = r.headers["Content-Location"]
    started = time.perf_counter()
    last = ""
    while True:
        r = await client.get(status_url)
        if r.status_code == 200:
            return status_url, r.json(), time.perf_counter() - started
        if r.status_code != 202:
            raise SystemExit(f"status answered {r.status_code}: {r.text[:500]}")
        progress = r.headers.get("X-Progress", "")
        if progress != last:
            print(f"  {time.perf_counter() - started:7.1f} s  {progress}", flush=True)
            last = progress
        if time.perf_counter() - started > limit_s:
            raise SystemExit(f"the export did not complete in {limit_s:.0f} s")
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))


async def count_file(client: httpx.AsyncClient, item: dict[str, Any], seen: dict[str, set[str]]) -> int:
    """Stream one file; every line must be a resource of the manifest's type with an id not seen before."""
    rtype = item["type"]
    ids = seen.setdefault(rtype, set())
    count = 0
    buffer = b""
    async with client.stream("GET", item["url"]) as r:
        if r.status_code != 200:
            raise SystemExit(f"{item['url']} answered {r.status_code}")
        async for chunk in r.aiter_bytes():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    count += _check_line(line, rtype, ids)
    if buffer.strip():
        count += _check_line(buffer, rtype, ids)
    if count != item["count"]:
        print(f"  {item['url']}: {count} lines, the manifest says {item['count']}")
    return count


def _check_line(line: bytes, rtype: str, ids: set[str]) -> int:
    resource = orjson.loads(line)
    if resource.get("resourceType") != rtype:
        raise SystemExit(f"a {resource.get('resourceType')} in the {rtype} file")
    if resource["id"] in ids:
        raise SystemExit(f"{rtype}/{resource['id']} exported twice")
    ids.add(resource["id"])
    return 1


async def store_counts(client: httpx.AsyncClient, base: str, types: str | None) -> dict[str, int]:
    if types:
        names = [t.strip() for t in types.split(",") if t.strip()]
    else:
        metadata = (await client.get(f"{base}/metadata")).json()
        names = [res["type"] for rest in metadata.get("rest", []) for res in rest.get("resource", [])]
    limit = asyncio.Semaphore(8)

    async def one(rtype: str) -> tuple[str, int]:
        async with limit:
            r = await client.get(f"{base}/{rtype}", params={"_summary": "count"})
            r.raise_for_status()
            return rtype, int(r.json()["total"])

    return {rtype: n for rtype, n in await asyncio.gather(*(one(t) for t in names)) if n}


async def job_seconds(client: httpx.AsyncClient, base: str, status_url: str) -> float | None:
    """This server records the job as a Task whose id ends the status URL; its executionPeriod is the job's own
    duration, free of the polling interval."""
    r = await client.get(f"{base}/Task/{status_url.rsplit('/', 1)[-1]}")
    if r.status_code != 200:
        return None
    period = r.json().get("executionPeriod", {})
    if "start" not in period or "end" not in period:
        return None
    start, end = (datetime.fromisoformat(period[k].replace("Z", "+00:00")) for k in ("start", "end"))
    return (end - start).total_seconds()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the server's FHIR base URL, e.g. http://127.0.0.1:8080/fhir")
    parser.add_argument("--type", help="export only these types (_type)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the export")
    parser.add_argument("--keep", action="store_true", help="keep the files (default: DELETE the job at the end)")
    args = parser.parse_args()
    base = args.base.rstrip("/")

    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10)) as client:
        print(f"$export at {base}", flush=True)
        status_url, manifest, export_s = await run_export(client, base, args.type, args.timeout)
        started = time.perf_counter()
        exported: Counter[str] = Counter()
        seen: dict[str, set[str]] = {}
        for item in manifest["output"]:
            exported[item["type"]] += await count_file(client, item, seen)
        download_s = time.perf_counter() - started
        store = await store_counts(client, base, args.type)
        job_s = await job_seconds(client, base, status_url)
        if not args.keep:
            await client.delete(status_url)

    total = sum(exported.values())
    files = len(manifest["output"])
    print(f"\n{'type':<28}{'exported':>12}{'in store':>12}")
    mismatches = 0
    for rtype in sorted(set(exported) | set(store)):
        flag = "" if exported[rtype] == store.get(rtype, 0) else "  MISMATCH"
        mismatches += bool(flag)
        print(f"{rtype:<28}{exported[rtype]:>12}{store.get(rtype, 0):>12}{flag}")
    print(f"\nexport: {total} resources in {files} files, {export_s:.1f} s to the manifest, "
          f"{total / export_s if export_s else 0:,.0f} resources/s")
    if job_s:
        print(f"the job itself (its Task's executionPeriod): {job_s:.2f} s, {total / job_s:,.0f} resources/s")
    print(f"download and check: {download_s:.1f} s ({total / download_s if download_s else 0:,.0f} resources/s)")
    print(f"errors in the manifest: {sum(e.get('count', 0) for e in manifest.get('error', []))}")
    print("counts match the store" if not mismatches else f"{mismatches} types do not match the store")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

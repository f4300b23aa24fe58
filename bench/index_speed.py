"""Index extraction speed: µs per resource for ``Indexer.extract`` (all R4 search parameters of each type).

Data: the Synthea transaction bundles in ``../shared/samples/synthea`` (each entry's resource, with the bundle's
``urn:uuid:`` references rewritten to ``Type/id`` first, as transaction processing does before indexing) and
the official R4 example corpus (``../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz``).  Resources are parsed with
``fhir_server.jsonio`` (exact decimals), as the server does; parsing is not timed.

Usage: ``.venv/bin/python bench/index_speed.py [--repeat N] [--profile]``.  Prints resources/s, mean µs per
resource, the slowest resource types, and with ``--profile`` the top functions of a cProfile run over Synthea.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.definitions import load_definitions
from fhir_server.indexing.extract import Indexer

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def synthea_resources() -> list[dict[str, Any]]:
    """Every resource of every Synthea bundle, references resolved to ``Type/id``."""
    resources: list[dict[str, Any]] = []
    for path in sorted((SHARED / "samples" / "synthea").glob("*.json")):
        bundle = jsonio.loads(path.read_bytes())
        entries = bundle.get("entry", [])
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in entries
            if "fullUrl" in e and "id" in e.get("resource", {})
        }
        resources.extend(_rewrite(e["resource"], ids) for e in entries if "resource" in e)
    return resources


def example_resources() -> list[dict[str, Any]]:
    """Every JSON resource of the R4 example package."""
    resources: list[dict[str, Any]] = []
    path = SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if (
                not member.isfile()
                or not member.name.endswith(".json")
                or member.name.endswith("package.json")
            ):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            try:
                resource = jsonio.loads(handle.read())
            except jsonio.JsonError:
                continue
            if isinstance(resource, dict) and "resourceType" in resource:
                resources.append(resource)
    return resources


def measure(indexer: Indexer, resources: list[dict[str, Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Per resource type: the best-of-``repeat`` (wall, CPU) seconds to extract all its resources.

    The machine is shared, so each type's batch is timed on its own and the best run kept; CPU time
    (``process_time``) is less disturbed by other processes than wall time."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        groups[resource["resourceType"]].append(resource)
    best: dict[str, tuple[float, float]] = {}
    for resource_type, group in groups.items():
        wall = cpu = float("inf")
        for _ in range(repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            for resource in group:
                indexer.extract(resource)
            wall = min(wall, time.perf_counter() - w0)
            cpu = min(cpu, time.process_time() - c0)
        best[resource_type] = (wall, cpu)
    return best


def report(name: str, indexer: Indexer, resources: list[dict[str, Any]], repeat: int) -> float:
    """Print the figures of one corpus; return mean wall µs per resource."""
    by_type = measure(indexer, resources, repeat)
    count = Counter(r["resourceType"] for r in resources)
    wall = sum(w for w, _c in by_type.values()) / len(resources)
    cpu = sum(c for _w, c in by_type.values()) / len(resources)
    entries = sum(_count(indexer, r) for r in resources) / len(resources)
    print(f"{name}: {len(resources)} resources, {wall * 1e6:.1f} µs/resource wall ({1 / wall:,.0f} resources/s), "
          f"{cpu * 1e6:.1f} µs CPU, {entries:.1f} entries/resource")  # fmt: skip
    slowest = sorted(by_type.items(), key=lambda item: -item[1][0] / count[item[0]])[:6]
    print(
        "  slowest types (wall): " + ", ".join(f"{t} {w / count[t] * 1e6:.0f} µs" for t, (w, _c) in slowest)
    )
    return wall * 1e6


def _count(indexer: Indexer, resource: dict[str, Any]) -> int:
    entries = indexer.extract(resource)
    return sum(len(getattr(entries, f)) for f in ("strings", "tokens", "dates", "numbers", "quantities",
                                                   "references", "uris", "composites"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    indexer = Indexer.from_definitions(load_definitions(), base_urls=["http://localhost:8080/fhir"])
    print(f"compiled all parameters in {time.perf_counter() - start:.2f} s; "
          f"{len(indexer.fallbacks())} evaluated by fhirpathpy")  # fmt: skip
    synthea = synthea_resources()
    synthea_us = report("synthea", indexer, synthea, args.repeat)
    examples_us = report("examples", indexer, example_resources(), args.repeat)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [indexer.extract(r) for r in synthea])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    print(
        json.dumps(
            {
                "synthea_us_per_resource": round(synthea_us, 1),
                "examples_us_per_resource": round(examples_us, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Synthea data for benchmarks: the 40 sample transaction Bundles in ../shared/samples/synthea, cloned with
fresh ids to any number of patients.

A clone replaces every ``urn:uuid`` of a bundle with a new UUID (the resource ids are the same UUIDs), and
suffixes identifier values so that clones stay distinct patients; names are kept, so common family names stay
common.  ``resolved=True`` also turns ``urn:uuid:X`` references into ``Type/X`` for loaders that write
resources by id rather than posting the transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYNTHEA = ROOT.parent / "shared" / "samples" / "synthea"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sample_bundles() -> list[tuple[str, dict[str, Any]]]:
    files = sorted(SYNTHEA.glob("*.json"))
    if not files:
        raise SystemExit(f"no Synthea bundles in {SYNTHEA}")
    return [(f.name, json.loads(f.read_text())) for f in files]


class _Template:
    """A sample bundle's JSON split at every UUID, so a clone is one join with fresh UUIDs."""

    def __init__(self, bundle: dict[str, Any], resolved: bool) -> None:
        types = {e["resource"]["id"]: e["resource"]["resourceType"] for e in bundle["entry"]
                 if "id" in e["resource"]}
        text = json.dumps(bundle)
        if resolved:
            text = re.sub("urn:uuid:(" + _UUID.pattern + ")",
                          lambda m: f"{types.get(m.group(1), 'Resource')}/{m.group(1)}", text)
        parts = _UUID.split(text)
        found = _UUID.findall(text)
        order: dict[str, int] = {}
        self.segments = parts
        self.slots = [order.setdefault(u, len(order)) for u in found]
        self.count = len(order)

    def render(self, clone: int) -> dict[str, Any]:
        fresh = [str(uuid.uuid4()) for _ in range(self.count)]
        out = [self.segments[0]]
        for slot, segment in zip(self.slots, self.segments[1:], strict=True):
            out.append(fresh[slot])
            out.append(segment)
        bundle: dict[str, Any] = json.loads("".join(out))
        if clone:
            for entry in bundle["entry"]:
                resource = entry["resource"]
                if resource["resourceType"] == "Patient":
                    for ident in resource.get("identifier", []):
                        if "value" in ident:
                            ident["value"] = f"{ident['value']}-c{clone}"
        return bundle


def clones(patients: int, *, resolved: bool = False, part: int = 0, parts: int = 1) -> Iterator[dict[str, Any]]:
    """Transaction Bundles, one per patient, cycling over the samples until ``patients`` are made (only those
    with ``n % parts == part``, to share the work between processes)."""
    templates = [_Template(bundle, resolved) for _, bundle in sample_bundles()]
    for n in range(part, patients, parts):
        yield templates[n % len(templates)].render(n // len(templates))


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]

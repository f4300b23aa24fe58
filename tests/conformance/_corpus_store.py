"""The official R4 example corpus as a search fixture: read the package, PUT every example by id, remember what is in.

Used by ``test_search_corpus.py``.  The store's content is known from the corpus itself: every example file except
the ones ``example_rejections.REJECTIONS`` lists as invalid R4 (which the server must refuse).
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conformance.example_rejections import REJECTIONS

FHIR_JSON = {"Content-Type": "application/fhir+json"}
CORPUS = ("fhir", "hl7.fhir.r4.examples-4.0.1.tgz")


@dataclass(frozen=True)
class Example:
    file: str
    resource_type: str
    id: str
    raw: bytes


@dataclass
class LoadedCorpus:
    examples: list[Example]
    rejected: dict[str, int] = field(default_factory=dict)  # file name -> HTTP status
    started: float = 0.0  # epoch seconds, just before the first PUT
    finished: float = 0.0  # epoch seconds, just after the last PUT answered
    seconds: float = 0.0

    def expected_store(self) -> dict[str, set[str]]:
        """Type -> ids the store must hold: the corpus minus the documented rejections (not what the server said)."""
        out: dict[str, set[str]] = {}
        for ex in self.examples:
            if ex.file not in REJECTIONS:
                out.setdefault(ex.resource_type, set()).add(ex.id)
        # ImplementationGuide/fhir exists twice (ImplementationGuide-fhir.json, ig-r4.json); both are rejected.
        return out


def read_examples(shared: Path) -> list[Example]:
    out = []
    with tarfile.open(shared.joinpath(*CORPUS)) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json") or name in ("package.json", ".index.json"):
                continue
            data = tar.extractfile(member)
            assert data is not None
            raw = data.read()
            head = json.loads(raw)
            out.append(Example(name, head["resourceType"], head["id"], raw))
    return sorted(out, key=lambda e: e.file)


async def load(client: httpx.AsyncClient, examples: list[Example], concurrency: int = 32) -> LoadedCorpus:
    """PUT every example by id (``concurrency`` requests in flight, so the server's group commit batches them)."""
    loaded = LoadedCorpus(examples)
    gate = asyncio.Semaphore(concurrency)

    async def put(ex: Example) -> None:
        async with gate:
            r = await client.put(f"/{ex.resource_type}/{ex.id}", content=ex.raw, headers=FHIR_JSON)
        if r.status_code not in (200, 201):
            loaded.rejected[ex.file] = r.status_code

    loaded.started = time.time()
    t0 = time.perf_counter()
    await asyncio.gather(*(put(ex) for ex in examples))
    loaded.seconds = time.perf_counter() - t0
    loaded.finished = time.time()
    return loaded

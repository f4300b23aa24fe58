"""Feeding HL7 v2 messages through the mappings into a real app (transaction POST /fhir) and reading back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server import jsonio
from hl7_adapters.mappings import map_message, merge
from hl7_adapters.v2 import parse_message
from tests.conftest_shared import shared_dir

FHIR = {"Content-Type": "application/fhir+json"}
BASE = "http://testserver/fhir"


def samples_dir() -> Path:
    shared = shared_dir()
    if shared is None or not (shared / "samples" / "hl7v2").is_dir():
        pytest.skip("../shared/samples/hl7v2 is not available (the HL7 v2 sample messages)")
    return shared / "samples" / "hl7v2"


def sample(name: str) -> bytes:
    return (samples_dir() / name).read_bytes()


class Feed:
    """Maps messages and POSTs their Bundles to the app; reads resources back over REST."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def send(self, raw: bytes | str) -> dict[str, Any]:
        msg = parse_message(raw)
        bundle = map_message(msg)
        await merge.complete(msg, bundle, self.app.state.fhir.unscoped(), BASE)
        response = await self.client.post("", content=orjson.dumps(bundle), headers=FHIR)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = jsonio.loads(response.content)
        return result

    async def sample(self, name: str) -> dict[str, Any]:
        return await self.send(sample(name))

    async def search(self, rtype: str, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get(rtype, params={**params, "_count": "200"})
        assert response.status_code == 200, response.text
        return [e["resource"] for e in jsonio.loads(response.content).get("entry", [])
                if e.get("search", {}).get("mode", "match") == "match"]

    async def one(self, rtype: str, **params: str) -> dict[str, Any]:
        found = await self.search(rtype, **params)
        assert len(found) == 1, f"{rtype}?{params}: {len(found)} matches"
        return found[0]

    async def read(self, reference: str) -> dict[str, Any]:
        response = await self.client.get(reference)
        assert response.status_code == 200, f"{reference}: {response.text}"
        result: dict[str, Any] = jsonio.loads(response.content)
        return result

    async def count(self, rtype: str) -> int:
        response = await self.client.get(rtype, params={"_summary": "count", "_total": "accurate"})
        return int(jsonio.loads(response.content)["total"])


@pytest.fixture
async def feed(app: Any, client: httpx.AsyncClient) -> Feed:
    return Feed(app, client)


def coding(concept: dict[str, Any], index: int = 0) -> tuple[str | None, str]:
    c = concept["coding"][index]
    return c.get("system"), c["code"]

"""All 40 Synthea sample Bundles load as transactions, and every reference in what was stored resolves."""

from __future__ import annotations

import json
from typing import Any

import httpx

from fhir_server import jsonio
from tests.conftest_shared import shared_dir


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


async def test_synthea_bundles_load_as_transactions_and_every_reference_resolves(
    client: httpx.AsyncClient, app: Any,
) -> None:
    files = sorted((shared_dir() / "samples" / "synthea").glob("*.json"))
    assert len(files) == 40
    stored: list[str] = []
    expected = 0
    for path in files:
        bundle = json.loads(path.read_bytes())
        expected += len(bundle["entry"])
        resp = await client.post("", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"})
        assert resp.status_code == 200, f"{path.name}: {resp.text[:2000]}"
        entries = resp.json()["entry"]
        assert len(entries) == len(bundle["entry"])
        assert all(e["response"]["status"] == "201 Created" for e in entries)
        stored.extend(e["response"]["location"].split("/_history")[0] for e in entries)
    assert len(stored) == expected == len(set(stored))

    repo = app.state.fhir.repo
    checked = 0
    for ref in stored:
        version = await repo.read(*ref.split("/"))
        assert version is not None and version.body is not None
        resource = jsonio.loads(version.body)
        for target in _references(resource):
            if target.startswith("#"):  # contained
                assert any(c.get("id") == target[1:] for c in resource.get("contained", [])), (ref, target)
                continue
            assert not target.startswith(("urn:", "http")), f"{ref}: unresolved {target}"
            rtype, _, id = target.partition("/")
            found = await repo.read(rtype, id)
            assert found is not None and not found.deleted, f"{ref}: {target} does not resolve"
            checked += 1
    assert checked > 30_000  # the sample bundles hold about 35,000 references between resources

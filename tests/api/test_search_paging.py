"""Search paging: next/previous links are keyset cursors, so concurrent writes neither repeat nor skip results."""

from __future__ import annotations

import httpx

from fhir_server import jsonio
from tests.factories import make_patient

FHIR = {"Content-Type": "application/fhir+json"}


async def _put(client: httpx.AsyncClient, i: int, family: str) -> None:
    r = await client.put(f"/Patient/p{i:03d}", content=jsonio.dumps(make_patient(id=f"p{i:03d}",
                         name=[{"family": family}])), headers=FHIR)
    assert r.status_code in (200, 201)


def _link(bundle: dict[str, object], relation: str) -> str | None:
    for link in bundle["link"]:  # type: ignore[attr-defined]
        if link["relation"] == relation:
            return str(link["url"]).replace("http://testserver/fhir", "")
    return None


async def _ids(client: httpx.AsyncClient, url: str) -> tuple[list[str], dict[str, object]]:
    bundle = (await client.get(url)).json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])], bundle


async def test_pages_survive_concurrent_writes(client: httpx.AsyncClient) -> None:
    for i in range(30):
        await _put(client, i, f"Fam{i % 7}")
    seen, bundle = await _ids(client, "/Patient?_count=10&_sort=family")
    assert len(seen) == 10 and bundle["total"] == 30
    # between pages: new patients arrive, one already-seen patient and one unseen patient are deleted
    for i in range(30, 35):
        await _put(client, i, "Aaa")  # sorts before everything already paged
    await client.delete(f"/Patient/{seen[0]}")
    url = _link(bundle, "next")
    pages = [seen]
    while url:
        page, bundle = await _ids(client, url)
        pages.append(page)
        url = _link(bundle, "next")
    everything = [i for page in pages for i in page]
    assert len(everything) == len(set(everything)), "no resource twice"
    originals = {f"p{i:03d}" for i in range(30)}
    assert originals <= set(everything), "no original resource skipped"
    # previous links lead back over the same pages
    back, bundle = await _ids(client, _link(bundle, "previous") or "")
    assert back == pages[-2]


async def test_count_zero_and_summary_count(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await _put(client, i, "Same")
    r = (await client.get("/Patient?family=same&_count=0")).json()
    assert r["total"] == 3 and "entry" not in r
    r = (await client.get("/Patient?family=same&_summary=count")).json()
    assert r["total"] == 3 and "entry" not in r
    r = (await client.get("/Patient?family=same&_total=none")).json()
    assert "total" not in r and len(r["entry"]) == 3


async def test_bad_cursor_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient?_cursor=garbage")
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_cursor"]

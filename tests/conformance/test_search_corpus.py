"""R4 search over the whole official example corpus: hand-written queries with expected ids (issue 3, "must show" 2).

The corpus is loaded once per module: every example of ``hl7.fhir.r4.examples-4.0.1`` is PUT by its id into an
in-process server (the documented invalid ones are refused and recorded).  Each case in ``search_cases.py`` is then
run, following ``next`` links to the end, and its matches (and included resources, and order where sorted) are
compared with the answer worked out from the examples and the R4 search page.  Known server bugs are strict xfails
whose reason states the bug.  At the end the module prints how many cases ran and passed.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio

from fhir_server.app import create_app
from fhir_server.settings import Settings, StorageSettings
from tests.conformance._corpus_store import LoadedCorpus, load, read_examples
from tests.conformance.example_rejections import REJECTIONS
from tests.conformance.search_cases import ALL_CASES, CATEGORIES, Case, Every, by_query, ids
from tests.conftest_shared import shared_dir

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "http://testserver/fhir"
MAX_PAGES = 200
RESULTS: dict[str, bool] = {}  # case or test name -> passed

by_query(ALL_CASES)  # fails at import on a duplicated query


@dataclass
class Corpus:
    client: httpx.AsyncClient
    loaded: LoadedCorpus
    store: dict[str, set[str]]  # what the store must hold, from the corpus and REJECTIONS

    def instant(self, which: str) -> str:
        t = self.loaded.started - 1 if which == "load_start" else self.loaded.finished + 1
        t = math.floor(t) if which == "load_start" else math.ceil(t)
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def corpus(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> AsyncIterator[Corpus]:
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared is not present")  # conftest_shared fails instead when CI=true
    examples = read_examples(shared)
    tmp = tmp_path_factory.mktemp("search-corpus")
    app = create_app(Settings(data_dir=tmp, storage=StorageSettings(sqlite_path=tmp / "corpus.db")))
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as client:
            loaded = await load(client, examples)
            store = loaded.expected_store()
            yield Corpus(client, loaded, store)
    _report(request, loaded, time.perf_counter() - started)


def _report(request: pytest.FixtureRequest, loaded: LoadedCorpus, seconds: float) -> None:
    cases = {c.query for c in ALL_CASES}
    ran = {k: v for k, v in RESULTS.items() if k in cases}
    others = {k: v for k, v in RESULTS.items() if k not in cases}
    lines = [
        f"search corpus: {len(loaded.examples)} examples PUT in {loaded.seconds:.1f} s "
        f"({len(loaded.rejected)} refused); module {seconds:.1f} s",
        f"search corpus: {len(ran)} of {len(ALL_CASES)} query cases ran, {sum(ran.values())} passed "
        f"({sum(1 for c in ALL_CASES if c.xfail)} marked xfail as server bugs); "
        f"{len(others)} other checks, {sum(others.values())} passed",
        "search corpus: cases by category: "
        + ", ".join(f"{name} {len(cs)}" for name, cs in CATEGORIES.items()),
    ]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


# -- running one search ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    matches: list[str]
    included: list[str]  # over all pages: R4 returns the includes of each page, so one may repeat across pages
    totals: list[int | None]
    pages: list[dict[str, Any]]
    issues: list[str]  # diagnostics of search.mode=outcome entries


def _params(corpus: Corpus, query: str) -> tuple[str, list[tuple[str, str]]]:
    path, _, qs = query.partition("?")
    params = []
    for part in qs.split("&") if qs else []:
        name, _, value = part.partition("=")
        for placeholder in ("load_start", "load_end"):
            value = value.replace("{" + placeholder + "}", corpus.instant(placeholder))
        params.append((name, value))
    return path, params


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


async def search(corpus: Corpus, query: str, method: str = "GET", headers: dict[str, str] | None = None) -> Outcome:
    client = corpus.client
    path, params = _params(corpus, query)
    if method == "POST":
        r = await client.post(f"/{path}/_search" if path else "/_search", content=urlencode(params),
                              headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    else:
        r = await client.get(f"/{path}" if path else "", params=params, headers=headers)
    out = Outcome([], [], [], [], [])
    for _ in range(MAX_PAGES):
        assert r.status_code == 200, f"{query}: HTTP {r.status_code}: {r.text[:1000]}"
        bundle = r.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
        out.pages.append(bundle)
        out.totals.append(bundle.get("total"))
        keys = [_key(e["resource"]) for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "outcome"]
        assert len(keys) == len(set(keys)), f"{query}: an entry repeats within one page: {keys}"
        for entry in bundle.get("entry", []):
            mode = entry.get("search", {}).get("mode")
            if mode == "match":
                out.matches.append(_key(entry["resource"]))
            elif mode == "include":
                out.included.append(_key(entry["resource"]))
            elif mode == "outcome":
                out.issues.extend(
                    f"{i.get('severity')}: {i.get('diagnostics') or i.get('details', {}).get('text')}"
                    for i in entry["resource"].get("issue", [])
                )
            else:
                raise AssertionError(f"{query}: entry without a valid search.mode: {entry}")
        next_url = next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == "next"), None)
        if next_url is None:
            return out
        r = await client.get(next_url, headers=headers)
    raise AssertionError(f"{query}: more than {MAX_PAGES} pages")


def _diff(label: str, got: set[str], want: set[str]) -> str:
    return (f"{label}: missing {sorted(want - got)}, unexpected {sorted(got - want)}"
            f" ({len(got)} returned, {len(want)} expected)")


def _expected(corpus: Corpus, expected: frozenset[str] | Every) -> set[str]:
    return expected.resolve(corpus.store) if isinstance(expected, Every) else set(expected)


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.query, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in ALL_CASES])
async def test_search_case(corpus: Corpus, case: Case) -> None:
    RESULTS[case.query] = False
    result = await search(corpus, case.query, case.method)
    context = f"{case.method} {case.query} — {case.why}" + (f"; server said {result.issues}" if result.issues else "")
    assert not result.issues, f"unexpected OperationOutcome entries: {context}"
    assert len(result.matches) == len(set(result.matches)), f"duplicate matches across pages: {context}"
    want = _expected(corpus, case.matches)
    assert set(result.matches) == want, _diff("matches", set(result.matches), want) + f" — {context}"
    if case.included is None:
        assert not result.included, f"included {result.included} without _include: {context}"
    else:
        assert set(result.included) == set(case.included), (
            _diff("included", set(result.included), set(case.included)) + f" — {context}")
    if case.order is not None:
        assert tuple(result.matches) == case.order, f"order {result.matches} — {context}"
    if "_total=none" in case.query:
        assert result.totals == [None] * len(result.totals), f"Bundle.total present with _total=none: {context}"
    else:
        for total in result.totals:
            assert total in (None, len(want)), f"Bundle.total {total} != {len(want)} matches: {context}"
    RESULTS[case.query] = True


# -- behaviours that are not just a set of ids ------------------------------------------------------------------


async def test_store_holds_the_corpus_minus_the_documented_rejections(corpus: Corpus) -> None:
    RESULTS["store content"] = False
    assert set(corpus.loaded.rejected) == set(REJECTIONS), (
        f"refused but not documented: {sorted(set(corpus.loaded.rejected) - set(REJECTIONS))}; "
        f"documented but accepted: {sorted(set(REJECTIONS) - set(corpus.loaded.rejected))}")
    assert sum(len(v) for v in corpus.store.values()) == 5306 - len(REJECTIONS)  # ImplementationGuide/fhir x2
    RESULTS["store content"] = True


async def test_count_and_next_links_page_through_everything_once(corpus: Corpus) -> None:
    """``_count=10`` over the 63 stored Observations: 7 pages of at most 10, together the full set, no repeats."""
    RESULTS["_count paging"] = False
    result = await search(corpus, "Observation?_count=10")
    want = Every("Observation").resolve(corpus.store)
    assert len(want) == 63
    sizes = [sum(1 for e in p.get("entry", []) if e["search"]["mode"] == "match") for p in result.pages]
    assert all(s <= 10 for s in sizes) and len(result.pages) == 7, sizes
    assert len(result.matches) == len(set(result.matches)), "a resource appeared on two pages"
    assert set(result.matches) == want, _diff("paged matches", set(result.matches), want)
    RESULTS["_count paging"] = True


async def test_summary_count_returns_only_the_total(corpus: Corpus) -> None:
    """``_summary=count``: the 17 Observations whose code is in the vital-sign result value set, no entries."""
    RESULTS["_summary=count"] = False
    result = await search(
        corpus, "Observation?code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult&_summary=count")
    assert result.totals == [17] and result.matches == [] and result.included == [], result.pages
    RESULTS["_summary=count"] = True


async def test_elements_returns_only_the_asked_elements(corpus: Corpus) -> None:
    """``_elements=name,gender``: Patient/example comes back with name and gender (plus id/meta), nothing else."""
    RESULTS["_elements"] = False
    result = await search(corpus, "Patient?_id=example&_elements=name,gender")
    entries = [e for p in result.pages for e in p.get("entry", []) if e["search"]["mode"] == "match"]
    assert len(entries) == 1
    resource = entries[0]["resource"]
    assert resource["gender"] == "male" and resource["name"][0]["family"] == "Chalmers", resource
    extra = set(resource) - {"resourceType", "id", "meta", "name", "gender", "implicitRules"}
    assert not extra, f"elements not asked for: {sorted(extra)}"
    RESULTS["_elements"] = True


async def test_strict_handling_refuses_an_unknown_parameter(corpus: Corpus) -> None:
    """``Prefer: handling=strict`` + an unknown parameter: 400 with an OperationOutcome naming it."""
    RESULTS["strict handling"] = False
    r = await corpus.client.get("/Patient", params={"gender": "female", "shoe-size": "42"},
                                headers={"Prefer": "handling=strict"})
    assert r.status_code == 400, r.text[:500]
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "shoe-size" in r.text, f"the OperationOutcome does not name the parameter: {r.text[:500]}"
    RESULTS["strict handling"] = True


@pytest.mark.parametrize("prefer", [None, "handling=lenient"])
async def test_lenient_handling_ignores_an_unknown_parameter_with_a_warning(corpus: Corpus, prefer: str | None) -> None:
    """Lenient (the default): the unknown parameter is ignored, left out of the self link, and reported as a
    warning in an OperationOutcome entry (search.mode = outcome)."""
    RESULTS[f"lenient handling {prefer}"] = False
    headers = {"Prefer": prefer} if prefer else None
    result = await search(corpus, "Patient?gender=female&shoe-size=42", headers=headers)
    assert set(result.matches) == ids("Patient", "animal genetics-example1 infant-mom infant-twin-1 mom pat4 proband")
    self_link = next(lk["url"] for lk in result.pages[0]["link"] if lk["relation"] == "self")
    assert "shoe-size" not in self_link and "gender=female" in self_link, self_link
    assert any(i.startswith("warning") and "shoe-size" in i for i in result.issues), result.issues
    RESULTS[f"lenient handling {prefer}"] = True

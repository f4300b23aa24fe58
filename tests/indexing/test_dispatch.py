"""Running only the parameters a resource can match (by its top-level properties, composites on the resource
itself by a property of every component) gives exactly the entries of running every parameter of its type."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.definitions import load_definitions
from fhir_server.indexing._plan import Memo
from fhir_server.indexing.extract import Indexer
from fhir_server.jsonio import FhirDecimal

INDEXER = Indexer.from_definitions(load_definitions())
_CODE = st.sampled_from([{"coding": [{"system": "http://loinc.org", "code": "2093-3"}]}, {"text": "glucose"},
                         {"coding": [{"code": "x"}, {"system": "http://snomed.info/sct", "code": "1"}]}])
_VALUES: dict[str, Any] = {
    "valueQuantity": st.builds(lambda v: {"value": FhirDecimal(v), "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                          "code": "mg/dL"}, st.sampled_from(["1", "2.50", "180"])),
    "valueCodeableConcept": _CODE,
    "valueString": st.sampled_from(["high", "Négatif"]),
    "valueDateTime": st.sampled_from(["2024-01-05", "2024-01-05T11:00:00+01:00"]),
    "valuePeriod": st.just({"start": "2024-01-01", "end": "2024-01-02"}),
    "valueBoolean": st.booleans(),
}


@st.composite
def _observations(draw: st.DrawFn) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": "final"}
    if draw(st.booleans()):
        resource["code"] = draw(_CODE)
    for key in draw(st.lists(st.sampled_from(sorted(_VALUES)), max_size=2, unique=True)):
        resource[key] = draw(_VALUES[key])
    components = []
    for _ in range(draw(st.integers(0, 2))):
        component: dict[str, Any] = {}
        if draw(st.booleans()):
            component["code"] = draw(_CODE)
        for key in draw(st.lists(st.sampled_from(sorted(_VALUES)), max_size=1)):
            component[key] = draw(_VALUES[key])
        components.append(component)
    if components:
        resource["component"] = components
    if draw(st.booleans()):
        resource["subject"] = {"reference": "Patient/p1"}
    return resource


def _every_parameter(resource: dict[str, Any]) -> list[list[Any]]:
    slots: list[list[Any]] = [[] for _ in range(8)]
    memo: Memo = {}
    for compiled in INDEXER.compiled(resource["resourceType"]).values():
        compiled.extract(resource, slots[compiled.slot], memo)
    return slots


def _dispatched(resource: dict[str, Any]) -> list[list[Any]]:
    entries = INDEXER.extract(resource)
    return [entries.strings, entries.tokens, entries.dates, entries.numbers, entries.quantities,
            entries.references, entries.uris, entries.composites]


@settings(max_examples=300, deadline=None)
@given(_observations())
def test_dispatch_gives_the_entries_of_every_parameter(resource: dict[str, Any]) -> None:
    for got, expected in zip(_dispatched(resource), _every_parameter(resource), strict=True):
        assert sorted(map(repr, got)) == sorted(map(repr, expected))


def test_composites_on_the_resource_run_only_with_every_component_present() -> None:
    dispatch = INDEXER._dispatch["Observation"]
    gated = {compiled.code for compiled, _needs in dispatch.gated}
    assert {"code-value-quantity", "code-value-date", "combo-code-value-quantity"} <= gated
    with_value = {"resourceType": "Observation", "status": "final", "code": {"text": "g"},
                  "valueQuantity": {"value": 5, "unit": "mg"}}
    codes = {entry.param for entry in INDEXER.extract(with_value).composites}
    assert {"code-value-quantity", "combo-code-value-quantity"} <= codes
    without = {k: v for k, v in with_value.items() if k != "valueQuantity"}
    assert not INDEXER.extract(without).composites

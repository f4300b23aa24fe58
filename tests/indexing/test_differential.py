"""Differential test of the path compiler: on every official R4 example, for every parameter that applies to it,
the values the compiled navigators select must equal what fhirpathpy selects for the same expression (compared
before normalisation).  For composite parameters the selected elements are compared, and then, element by
element, what each component expression selects.

The oracle is fhirpathpy with the R4 model and the adaptations documented in
:mod:`fhir_server.indexing._fallback` and :mod:`fhir_server.indexing._compile` (each is a deliberate reading of
the R4 expressions, not a compiler shortcut):

* ``resolve()`` is provided (a stub typed by the reference), since fhirpathpy has none;
* a leading ``Resource.``/``DomainResource.`` is written as the concrete type (fhirpathpy matches a leading type
  name against the exact type only);
* ``as`` is evaluated as ``ofType`` (R4 applies it to collections, where fhirpathpy raises "expected singleton");
* the System type ``DateTime`` in a type test is the FHIR ``dateTime`` (``Observation.code-value-date``).

Values are compared as canonical JSON (numbers by decimal value); as multisets, or as sets when the expression
has a union (``|`` removes duplicates in FHIRPath); JSON ``null`` items of primitive arrays are not values.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from fhirpathpy.engine.nodes import ResourceNode

from fhir_server.definitions import load_definitions
from fhir_server.indexing._fallback import concrete_expression, evaluate, parse_fhirpath
from fhir_server.indexing._plan import CompiledParam
from fhir_server.indexing.extract import Indexer, SearchParam
from tests.indexing._corpus import examples

_TYPES = sorted(load_definitions().resource_types)


@cache
def _indexer() -> Indexer:
    return Indexer.from_definitions(load_definitions(), base_urls=["http://hl7.org/fhir"])


@cache
def _by_type() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, resource in examples():
        grouped.setdefault(resource["resourceType"], []).append((name, resource))
    return grouped


def oracle_expression(expression: str, resource_type: str) -> str:
    """The expression as given to fhirpathpy (see the module docstring)."""
    expression = concrete_expression(expression, resource_type)
    expression = re.sub(r"\.as\(", ".ofType(", expression)
    expression = re.sub(r"\s+as\s+([A-Za-z][A-Za-z0-9_.]*)", r".ofType(\1)", expression)
    return expression.replace("ofType(DateTime)", "ofType(dateTime)")


@cache
def _parsed(expression: str) -> Any:
    return parse_fhirpath(expression)


def _oracle(
    expression: str, resource: dict[str, Any], item: Any = None, item_type: str | None = None
) -> list[Any]:
    nodes = evaluate(_parsed(expression), _indexer().references, resource, item, item_type)
    return [node.data if isinstance(node, ResourceNode) else node for node in nodes]


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return {"#number": str(Decimal(str(value)).normalize())}
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _bag(values: list[Any], as_set: bool) -> Counter[str]:
    keys = [json.dumps(_canonical(v), sort_keys=True, default=str) for v in values if v is not None]
    return Counter(set(keys) if as_set else keys)


def _compare(expected: list[Any], actual: list[Any], expression: str) -> str | None:
    as_set = "|" in expression
    want, got = _bag(expected, as_set), _bag(actual, as_set)
    if want == got:
        return None
    return f"fhirpathpy {sorted(want.elements())[:3]} != compiled {sorted(got.elements())[:3]}"


def _check_param(param: SearchParam, compiled: CompiledParam, resource: dict[str, Any]) -> list[str]:
    assert param.expression is not None
    rt = resource["resourceType"]
    expression = oracle_expression(param.expression, rt)
    try:
        expected = _oracle(expression, resource)
    except Exception as exc:  # the oracle's own failure is a finding too
        return [f"{param.code}: fhirpathpy raised {exc!r}"]
    problem = _compare(expected, [v for v, _t in compiled.select(resource)], expression)
    if problem:
        return [f"{param.code} ({param.expression}): {problem}"]
    return _check_components(param, compiled, resource) if param.type == "composite" else []


def _check_components(param: SearchParam, compiled: CompiledParam, resource: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for (run, _n, ctx), components in zip(compiled.selectors, compiled.components, strict=True):
        item_type = ctx.element if ctx.type in ("BackboneElement", "Element") else ctx.type
        for element in run(resource):
            for component in components:
                expression = component.expression
                navs = [nav for nav, _norm in component.selectors] + component.unindexed
                mine = [v for nav in navs for v in nav([element], resource)]
                oracle = oracle_expression(expression, rt := resource["resourceType"])
                try:
                    expected = _oracle(oracle, resource, element, item_type)
                except Exception as exc:
                    problems.append(f"{param.code}/{expression} on {rt}: fhirpathpy raised {exc!r}")
                    continue
                problem = _compare(expected, mine, oracle)
                if problem:
                    problems.append(f"{param.code}/{expression}: {problem}")
    return problems


def test_core_parameters_need_no_fallback() -> None:
    assert _indexer().fallbacks() == []


@pytest.mark.slow
@pytest.mark.parametrize("resource_type", _TYPES)
def test_compiled_paths_select_what_fhirpathpy_selects(resource_type: str) -> None:
    indexer = _indexer()
    problems: list[str] = []
    for name, resource in _by_type().get(resource_type, []):
        params = indexer.params_for(resource_type)
        for code, compiled in indexer.compiled(resource_type).items():
            problems.extend(f"{name}: {p}" for p in _check_param(params[code], compiled, resource))
    assert not problems, "\n".join(problems[:25])

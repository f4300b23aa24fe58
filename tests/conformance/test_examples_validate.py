"""The validator against the official R4 example corpus: every example is valid except the listed rejections."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.definitions import load_definitions
from fhir_server.services.validate import Validator
from tests.conformance.example_rejections import REJECTIONS
from tests.conftest_shared import shared_dir

EXAMPLES = "hl7.fhir.r4.examples-4.0.1.tgz"


def iter_examples(path: Path) -> Iterator[tuple[str, Any]]:
    """(file name, parsed JSON) for every resource file of the examples package."""
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json") or name in ("package.json", ".index.json"):
                continue
            stream = tar.extractfile(member)
            assert stream is not None
            data = jsonio.loads(stream.read())
            if isinstance(data, dict) and "resourceType" in data:
                yield name, data


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, Any]]:
    root = shared_dir()
    if root is None:
        pytest.skip("../shared (the official FHIR packages) is not present beside the repository")
    return sorted(iter_examples(root / "fhir" / EXAMPLES), key=lambda item: item[0])


def test_every_example_is_valid_except_the_listed_rejections(examples: list[tuple[str, Any]]) -> None:
    validator = Validator(load_definitions())
    rejected: dict[str, list[str]] = {}
    for name, resource in examples:
        issues = validator.validate(resource)
        if issues:
            rejected[name] = [expression for issue in issues for expression in issue.expression]
    accepted = len(examples) - len(rejected)
    print(f"\nR4 examples: {len(examples)} resources, {accepted} accepted, {len(rejected)} rejected")

    unexpected = {name: rejected[name][:5] for name in sorted(set(rejected) - set(REJECTIONS))}
    assert not unexpected, f"valid examples rejected: {unexpected}"
    missing = sorted(set(REJECTIONS) - set(rejected))
    assert not missing, f"listed rejections that were accepted: {missing}"
    for name, (expression, _reason) in REJECTIONS.items():
        assert expression in rejected[name], (name, rejected[name][:10])
    assert len(examples) == 5306

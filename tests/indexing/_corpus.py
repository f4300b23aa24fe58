"""The shared data the indexing tests read: the R4 example corpus and the Synthea bundles.

They live in ``../shared`` (``tests.conftest_shared.shared_dir()``).  When the data is
absent the tests are skipped — except under CI (``CI=true``), where missing data is a failure.
"""

from __future__ import annotations

import os
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from tests.conftest_shared import shared_dir

EXAMPLES = ("fhir", "hl7.fhir.r4.examples-4.0.1.tgz")


def require(*parts: str) -> Path:
    """The path of a shared file; skip the test when absent (fail under CI)."""
    root = shared_dir()
    if root is None:
        pytest.skip("the shared data directory is missing")
    path = root.joinpath(*parts)
    if not path.exists():
        message = f"shared test data missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@cache
def _load_examples(path: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
    found: list[tuple[str, dict[str, Any]]] = []
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            name = member.name
            if not member.isfile() or not name.endswith(".json") or name.endswith("package.json"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            resource = jsonio.loads(handle.read())
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                found.append((name.rsplit("/", 1)[-1], resource))
    return tuple(found)


def examples() -> tuple[tuple[str, dict[str, Any]], ...]:
    """``(file name, resource)`` for every JSON resource of the R4 example package (parsed once)."""
    return _load_examples(require(*EXAMPLES))

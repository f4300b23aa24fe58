"""Where the shared data lives: ``../shared`` beside the repository (official FHIR packages, Synthea, HL7 v2).

Tests and benchmarks may read it; the product never does.  Without it the tests that need it are skipped, except
under CI (``CI=true``), where its absence is a failure: CI must run the whole suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """``../shared`` relative to the repository root, or None when absent (``pytest.fail`` when ``CI=true``)."""
    path = (REPO_ROOT.parent / "shared").resolve()
    if path.is_dir():
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"the shared data directory {path} is missing, and CI=true requires it")
    return None

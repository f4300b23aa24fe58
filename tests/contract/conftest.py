"""The storage contract suite runs against every backend listed here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fhir_server.storage.base import Repository
from fhir_server.storage.sqlite.repository import SQLiteRepository

BACKENDS: dict[str, Callable[[Path], Repository]] = {
    "sqlite": lambda tmp: SQLiteRepository(tmp / "contract.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    repository = BACKENDS[request.param](tmp_path)
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()

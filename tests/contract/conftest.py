"""The storage contract suite runs against every backend listed here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fhir_server.storage.base import Repository
from fhir_server.storage.sqlite.repository import SQLiteRepository
from tests.mongo_server import NO_TRANSACTIONS, mongo_target

BACKENDS: dict[str, Callable[[Path], Repository]] = {
    "sqlite": lambda tmp: SQLiteRepository(tmp / "contract.db"),
    # FHIR_TEST_MONGODB_URL, or the emulator (tests/mongo_server.py)
    "mongodb": lambda tmp: mongo_target().repository(),
}

# Contract tests that need multi-document transactions, which the MongoDB emulator does not have: they are
# skipped there (never against a real MongoDB), with the reason; docs/mongodb.md lists them.
NEEDS_TRANSACTIONS = {
    "test_write_is_atomic": "a failing op must undo the ops written before it in the same write",
}


@pytest.fixture(params=sorted(BACKENDS))
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    if request.param == "mongodb":
        target = mongo_target()
        needs = NEEDS_TRANSACTIONS.get(request.node.originalname)
        if needs and not target.transactions:
            pytest.skip(f"{needs}: {NO_TRANSACTIONS}")
    repository = BACKENDS[request.param](tmp_path)
    await repository.open()
    try:
        yield repository
    finally:
        await repository.close()

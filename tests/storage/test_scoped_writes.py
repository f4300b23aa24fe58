"""Writes through the scoped repository: an identity whose reach is unrestricted (the HL7 listener's
``system/*.cruds``) writes conditional updates without look-ups before the write, with the same outcomes as
without authorization; a limited one still has every match and replaced version checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.auth.guard import Guard
from fhir_server.auth.policy import AccessPolicy
from fhir_server.auth.reach import ReachCompiler
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.tokens import AccessContext
from fhir_server.definitions import load_definitions
from fhir_server.errors import Forbidden
from fhir_server.indexing.extract import Indexer
from fhir_server.search.model import Clause, SearchQuery, TokenValue
from fhir_server.search.registry import SearchRegistry
from fhir_server.storage.base import WriteOp
from fhir_server.storage.scoped import ScopedRepository
from fhir_server.storage.sqlite.repository import SQLiteRepository

DEFS = load_definitions()
INDEXER = Indexer.from_definitions(DEFS)
COMPILER = ReachCompiler(DEFS, SearchRegistry(INDEXER, DEFS.resource_types), INDEXER)
SYS = "urn:mrn"


class Counting:
    """The store, counting the look-ups the scoped repository makes of it."""

    def __init__(self, inner: SQLiteRepository) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("find", "find_many", "read", "vread"):
            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return await attr(*args, **kwargs)
            return counted
        return attr


def _scoped(store: Counting, kind: str, scope: str, patient: str | None = None) -> ScopedRepository:
    context = AccessContext(subject="s", client_id="c", scopes=ScopeSet.parse(scope, DEFS.resource_types),
                            kind=kind, token_id=f"t-{kind}-{scope}", issued_at=0, expires_at=0,  # type: ignore[arg-type]
                            patient=patient)
    policy = AccessPolicy(context, COMPILER.linked_types)
    return ScopedRepository(store, Guard(policy, COMPILER, store), tuple(sorted(DEFS.resource_types)))  # type: ignore[arg-type]


def _patient_update(mrn: str, family: str, id: str | None = None, by_match: bool | None = None) -> WriteOp:
    resource = {"resourceType": "Patient", "identifier": [{"system": SYS, "value": mrn}],
                "name": [{"family": family}], **({"id": id} if id else {})}
    match = None if id and not by_match else SearchQuery("Patient", (Clause("identifier", "token", (TokenValue(SYS, mrn),)),))
    return WriteOp("update", "Patient", id=None if match else id, resource=resource, index=INDEXER.extract(resource),
                   match=match, create_id="new-one" if match else None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Counting]:
    repo = SQLiteRepository(tmp_path / "s.db")
    await repo.open()
    try:
        yield Counting(repo)
    finally:
        await repo.close()


async def test_an_unrestricted_identity_updates_by_match_without_looking_up_first(store: Counting) -> None:
    await store.inner.write([_patient_update("M1", "Before", id="p1")])
    system = _scoped(store, "system", "system/*.cruds")
    (updated,) = await system.write([_patient_update("M1", "After")])
    (created,) = await system.write([_patient_update("M2", "Fresh")])
    assert store.calls == []  # the store resolved both matches inside its transaction
    assert updated.id == "p1" and not updated.created and updated.version is not None
    assert updated.version.version == 2
    assert created.id == "new-one" and created.created
    actions = [(t.resource_type, t.id, t.action) for t in system.guard.record.touched]
    assert actions == [("Patient", "p1", "U"), ("Patient", "new-one", "C")]  # both audited
    current = await store.inner.read("Patient", "p1")
    assert current is not None and current.body is not None and b"After" in current.body


async def test_a_limited_identity_still_has_the_match_and_the_replaced_version_checked(store: Counting) -> None:
    await store.inner.write([_patient_update("M3", "Other", id="someone-else"),
                             _patient_update("M4", "Own", id="me")])
    patient = _scoped(store, "patient", "patient/*.cruds", patient="me")
    (own,) = await patient.write([_patient_update("M4", "Own again", id="me", by_match=True)])
    assert own.id == "me" and own.version is not None and own.version.version == 2
    assert "find_many" in store.calls and "read" in store.calls  # looked up, checked and pinned
    with pytest.raises(Forbidden):  # another patient's record is not matched: a create with a chosen id
        await patient.write([_patient_update("M3", "Hijack", id="someone-else")])
    other = await store.inner.read("Patient", "someone-else")
    assert other is not None and other.body is not None and b"Other" in other.body

"""SQLite's bulk create (the audit trail's path) stores exactly what one create op per resource stores: the same
index rows (shared rows copied from templates), versions and bodies — templates made cold, reused warm, and
dropped and made again when there are too many."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fhir_server.definitions import load_definitions
from fhir_server.indexing.entries import CompositeEntry, QuantityEntry, TokenEntry
from fhir_server.indexing.extract import Indexer
from fhir_server.indexing.shared_parts import SharedPartIndexer
from fhir_server.storage.base import IndexEntries, NewResource, SharedIndex, WriteOp
from fhir_server.storage.sqlite import _shared_rows
from fhir_server.storage.sqlite._index_rows import TABLES
from fhir_server.storage.sqlite.repository import SQLiteRepository
from tests.indexing.test_shared_parts import VARYING, _events


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every index row, rid and pid replaced by the resource id and the (type, code) they stand for."""
    conn = sqlite3.connect(path)
    try:
        ids = dict(conn.execute("SELECT rid, id FROM resources"))
        params = {pid: (t, c) for pid, t, c in conn.execute("SELECT pid, type, code FROM search_params")}
        out = {}
        for table in TABLES:
            cursor = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            out[table] = sorted(tuple(params[v] if n == "pid" else ids[v] if n == "rid" else v
                                      for n, v in zip(names, row, strict=True)) for row in cursor)
        out["versions"] = sorted(conn.execute("SELECT r.id, v.version, v.method, json_remove(v.body, "
                                              "'$.meta.lastUpdated') FROM versions v JOIN resources r USING (rid)"))
        return out
    finally:
        conn.close()


def _composite_case(n: int) -> NewResource:
    """Composites in both halves: the resource's own are numbered after the shared ones."""
    quantity = QuantityEntry("value-quantity", float(n), n - 0.5, n + 0.5, "http://unitsofmeasure.org", "mg", "mg")
    code = TokenEntry("code", "http://loinc.org", "1234-5")
    same = QuantityEntry("value-quantity", 7.0, 6.5, 7.5, "http://unitsofmeasure.org", "mg", "mg")
    shared = SharedIndex(b"composite", IndexEntries(tokens=[code], composites=[  # the same for every resource
        CompositeEntry("code-value-quantity", ((code,), (same,)))]))
    own = IndexEntries(composites=[CompositeEntry("code-value-quantity", ((code,), (quantity,))),
                                   CompositeEntry("combo-code-value-quantity", ((code,), (quantity,)))])
    return NewResource(f"obs-{n}", {"resourceType": "Observation", "id": f"obs-{n}"}, own, shared)


@pytest.mark.parametrize("templates_max", [1024, 3])
async def test_bulk_rows_equal_one_create_op_each(tmp_path: Path, templates_max: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shared_rows, "_MAX", templates_max)
    shared = SharedPartIndexer(Indexer.from_definitions(load_definitions()), "AuditEvent", VARYING)
    events = _events(random.Random(17), 300)
    general, bulk = SQLiteRepository(tmp_path / "general.db"), SQLiteRepository(tmp_path / "bulk.db")
    await general.open()
    await bulk.open()
    try:
        for start in range(0, len(events), 64):  # several batches: templates cold, then warm
            part = events[start:start + 64]
            await general.write([WriteOp("create", "AuditEvent", id=e["id"], resource=e, index=shared.extract(e))
                                 for e in part])
            items = [NewResource(e["id"], e, own, common) for e in part for common, own in [shared.split(e)]]
            assert await bulk.create_many("AuditEvent", items) == [True] * len(part)
        obs = [_composite_case(n) for n in range(3)]
        await general.write([WriteOp("create", "Observation", id=o.id, resource=o.resource, index=o.entries())
                             for o in obs])
        assert await bulk.create_many("Observation", obs) == [True] * 3
        assert await bulk.create_many("AuditEvent", [items[0]]) == [False]  # sent again: nothing written
    finally:
        await general.close()
        await bulk.close()
    expected, got = _rows(tmp_path / "general.db"), _rows(tmp_path / "bulk.db")
    assert len(expected["idx_token"]) > 2000 and expected["idx_reference"]
    for table in expected:
        assert got[table] == expected[table], table

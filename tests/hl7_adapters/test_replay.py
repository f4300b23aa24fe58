"""``infirmary hl7 replay``: messages logged as not applied are applied again once the cause is gone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_server import jsonio
from fhir_server.cli import main
from fhir_server.settings import Settings, StorageSettings
from fhir_server.storage.sqlite._tx import TxWriter
from tests.hl7_adapters.test_inbound import oru


async def _feed(settings: Settings, messages: list[str]) -> list[str]:
    from fhir_server.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        return [(await app.state.hl7.pipeline.process(m.encode())).code for m in messages]


async def _count(settings: Settings, rtype: str) -> int:
    from fhir_server.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        fhir = app.state.fhir
        return len(await fhir.repo.find(fhir.resources.criteria(rtype, "_id:missing=false"), limit=100))


def test_replay_after_store_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FHIR_HL7__ENABLED", "false")
    settings = Settings(data_dir=tmp_path, storage=StorageSettings())
    original = TxWriter._apply_one

    def failing(self: TxWriter, op: Any) -> Any:
        if op.resource_type == "Observation":
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, op)

    monkeypatch.setattr(TxWriter, "_apply_one", failing)
    assert asyncio.run(_feed(settings, [oru("R-1"), oru("R-2", value="abc")])) == ["AR", "AE"]
    monkeypatch.setattr(TxWriter, "_apply_one", original)
    assert asyncio.run(_count(settings, "Observation")) == 0

    runner = CliRunner()
    listed = runner.invoke(main, ["hl7", "replay", "--outcome", "AR", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    lines = [jsonio.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert [line["was"] for line in lines] == ["AR"] and "outcome" not in lines[0]

    replayed = runner.invoke(main, ["hl7", "replay"])  # default: AE and AR
    lines = [jsonio.loads(line) for line in replayed.output.splitlines() if line.startswith("{")]
    assert sorted((line["was"], line["outcome"]) for line in lines) == [("AE", "AE"), ("AR", "AA")]
    assert replayed.exit_code == 1  # one message still fails
    assert asyncio.run(_count(settings, "Observation")) == 1

    again = runner.invoke(main, ["hl7", "replay", "--outcome", "AA", "--type", "ORU^R01"])
    lines = [jsonio.loads(line) for line in again.output.splitlines() if line.startswith("{")]
    assert [(line["outcome"], line.get("duplicate")) for line in lines] == [("AA", True)]  # not applied twice
    assert asyncio.run(_count(settings, "Observation")) == 1

"""An application with a hand-driven job clock and a small clinic whose slots the real jobs generated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.jobs.clock import ManualClock
from fhir_server.settings import SchedulingSettings, Settings, StorageSettings
from tests.workflows.scheduling.clinic import seed_clinic


@dataclass
class Clinic:
    app: Any
    clock: ManualClock
    http: httpx.AsyncClient

    @property
    def fhir(self) -> Any:
        return self.app.state.fhir

    async def settle(self) -> None:
        """Let every job that is due (slot generation, hold expiry, notifications) run to the end."""
        await self.fhir.runner.idle()

    async def slot(self, slot_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/Slot/{slot_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def scheduling_settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    scheduling=SchedulingSettings(horizon_days=7, **changes))


@pytest.fixture
async def clinic(tmp_path: Path) -> AsyncIterator[Clinic]:
    from fhir_server.app import create_app

    clock = ManualClock()
    app = create_app(scheduling_settings(tmp_path), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as http:
            world = Clinic(app, clock, http)
            await seed_clinic(world.fhir.resources)  # the PractitionerRole writes enqueue slot generation
            await world.settle()
            yield world

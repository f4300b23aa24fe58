"""Fixtures of the HL7 tests: an application with the MLLP listener on an ephemeral port, a client helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.settings import Hl7Settings, Settings, StorageSettings
from hl7_adapters.mllp.client import MllpClient, MllpError
from hl7_adapters.v2 import Message, parse_message
from tests.conftest_shared import shared_dir


def hl7_settings(tmp_path: Path, **hl7: Any) -> Settings:
    return Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "test.db"),
                    hl7=Hl7Settings(enabled=True, host="127.0.0.1", port=0, **hl7))


@pytest.fixture
async def hl7_app(tmp_path: Path) -> AsyncIterator[Any]:
    from fhir_server.app import create_app

    application = create_app(hl7_settings(tmp_path))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def mllp_port(hl7_app: Any) -> int:
    return int(hl7_app.state.hl7.server.port)


@pytest.fixture
async def rest(hl7_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hl7_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as c:
        yield c


async def exchange(client: MllpClient, raw: bytes | str, frames: int = 1, quiet_s: float = 0.3) -> list[Message]:
    """Send one message; read ``frames`` answers, then make sure no further answer comes within ``quiet_s``."""
    await client.write(raw.encode() if isinstance(raw, str) else raw)
    answers = [parse_message(await client.read(10)) for _ in range(frames)]
    try:
        extra = await client.read(quiet_s)
    except MllpError:
        return answers
    raise AssertionError(f"an unexpected extra answer: {extra!r}")


def msa(ack: Message) -> tuple[str, str, str]:
    seg = ack.first("MSA")
    assert seg is not None
    return seg.value(1), seg.value(2), seg.value(3)


def samples_dir() -> Path:
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared (HL7 v2 samples) is not present")
    return shared / "samples" / "hl7v2"

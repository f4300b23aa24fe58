"""FastAPI's native OpenTelemetry hook is off unless FHIR_SERVER__OPENTELEMETRY asks for it: off, a request does
not look up the global OpenTelemetry providers (a cost on every request, for nothing when no SDK is set up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_server.settings import ServerSettings, Settings, StorageSettings


@pytest.mark.parametrize("on", [False, True])
def test_the_setting_reaches_fastapi(tmp_path: Path, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.telemetry import _asgi

    from fhir_server.app import create_app

    looked_up: list[str] = []

    def provider(kind: str) -> Any:
        def get() -> object:
            looked_up.append(kind)
            return object()  # a configured provider (not the API's deferred default)
        return get

    monkeypatch.setattr(_asgi.trace, "get_tracer_provider", provider("trace"))
    app = create_app(Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "t.db"),
                              server=ServerSettings(opentelemetry=on)))
    native = app._native_telemetry
    assert native.enabled() is on
    assert bool(looked_up) is on  # off: not even looked up

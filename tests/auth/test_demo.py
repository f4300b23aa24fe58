"""Demo users and the demo client exist in demo mode only."""

from __future__ import annotations

import stat
from pathlib import Path

from fhir_server.auth.passwords import verify_password
from fhir_server.demo.auth import DEMO_CLIENT_ID, DEMO_USERS, demo_summary
from fhir_server.settings import Settings, StorageSettings


async def _users(tmp_path: Path, demo: bool) -> tuple[list[str], bool]:
    from fhir_server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, demo=demo, storage=StorageSettings(sqlite_path=tmp_path / "x.db")))
    async with app.router.lifespan_context(app):
        store = app.state.auth.store
        return [u.username for u in store.list_users()], store.get_client(DEMO_CLIENT_ID) is not None


async def test_demo_mode_creates_demo_users_and_client(tmp_path: Path) -> None:
    names, has_client = await _users(tmp_path, demo=True)
    assert sorted(names) == sorted(u[0] for u in DEMO_USERS) and has_client
    # the auth state file holds password hashes: readable by the server's user only
    assert stat.S_IMODE((tmp_path / "auth.db").stat().st_mode) == 0o600

    from fhir_server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, demo=True, storage=StorageSettings(sqlite_path=tmp_path / "x.db")))
    async with app.router.lifespan_context(app):  # a second start changes nothing
        store = app.state.auth.store
        alice = store.get_user_by_username("alice")
        assert alice is not None and alice.patient_id == "pat-alice"
        assert verify_password(alice.password_hash, DEMO_USERS[0][1])
        assert len(store.list_users()) == len(DEMO_USERS)
    lines = demo_summary("http://127.0.0.1:8080")
    assert any("alice" in line and DEMO_USERS[0][1] in line for line in lines)
    assert any(DEMO_CLIENT_ID in line for line in lines)


async def test_no_demo_users_outside_demo_mode(tmp_path: Path) -> None:
    assert await _users(tmp_path, demo=False) == ([], False)

"""The ``AuthStore`` contract, run against every implementation: SQLite (two connections on one file, as two worker
processes have) and MongoDB (two stores on one database, as two API hosts have; ``FHIR_TEST_MONGODB_URL`` or the
emulator).  ``store`` and ``other`` are the two "hosts": what one writes, the other must see; what one uses once,
the other must not use again — also when eight threads race for it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from fhir_server.auth.models import AuthCode, Client, LaunchContext, RefreshToken, Session, User
from fhir_server.auth.mongo_store import MongoAuthStore
from fhir_server.auth.sqlite_store import LISTS_RECHECK_S, SQLiteAuthStore
from fhir_server.auth.store import AuthStore
from tests.mongo_server import mongo_target

T = TypeVar("T")
RACERS = 8


@pytest.fixture(params=["sqlite", "mongodb"])
def hosts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AuthStore, AuthStore]]:
    if request.param == "sqlite":
        stores: list[AuthStore] = [SQLiteAuthStore(tmp_path / "auth.db"), SQLiteAuthStore(tmp_path / "auth.db")]
    else:
        target = mongo_target()
        database = f"auth{uuid.uuid4().hex[:12]}"
        stores = [MongoAuthStore(target.url, database=database), MongoAuthStore(target.url, database=database)]
    for s in stores:
        s.open()
    try:
        yield stores[0], stores[1]
    finally:
        if isinstance(stores[0], MongoAuthStore):
            stores[0].drop()
        for s in stores:
            s.close()


def race(hosts: tuple[AuthStore, AuthStore], attempt: Callable[[AuthStore], T]) -> list[T]:
    """``attempt`` from RACERS threads at once, alternately on each host."""
    barrier = threading.Barrier(RACERS)
    results: list[T] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        outcome = attempt(hosts[i % 2])
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == RACERS
    return results


def seen_within_recheck(check: Callable[[], bool]) -> bool:
    """Whether ``check`` turns true within the lists' re-check interval (plus scheduling slack)."""
    deadline = time.monotonic() + LISTS_RECHECK_S + 2.0
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(LISTS_RECHECK_S / 5)
    return check()


def user(username: str = "ada", **overrides: object) -> User:
    fields: dict[str, object] = {"id": f"u-{username}", "username": username, "password_hash": "$argon2id$x",
                                 "kind": "staff", "display_name": username.title(), "roles": ("nurse", "physician"),
                                 "practitioner_id": "prac-1", "created_at": 1_700_000_000.5}
    fields.update(overrides)
    return User(**fields)  # type: ignore[arg-type]


def client(client_id: str = "app", **overrides: object) -> Client:
    fields: dict[str, object] = {"client_id": client_id, "name": "App", "auth_method": "private_key_jwt",
                                 "scope": "system/*.rs", "redirect_uris": ("https://a.example/cb",),
                                 "grant_types": ("client_credentials",), "jwks": {"keys": [{"kty": "EC", "x": "1"}]},
                                 "created_at": 1_700_000_001.25}
    fields.update(overrides)
    return Client(**fields)  # type: ignore[arg-type]


def code(code_hash: str = "c1", client_id: str = "app", grant_id: str = "g1", expires_in: float = 60,
         nonce: str | None = "n1") -> AuthCode:
    return AuthCode(code_hash, client_id, "https://a.example/cb", "openid patient/*.rs", "u-ada", "chal", "S256",
                    time.time() + expires_in, grant_id, 1_700_000_000, session_id="s1", nonce=nonce, patient="p1",
                    need_patient_banner=True, launch_id="l1")


def refresh(token_hash: str = "r1", grant_id: str = "g1", client_id: str = "app", session_id: str | None = None,
            expires_in: float = 3600) -> RefreshToken:
    now = time.time()
    return RefreshToken(token_hash, client_id, "u-ada", "patient/*.rs offline_access", grant_id, now,
                        now + expires_in, 1_700_000_000, session_id=session_id, patient="p1", encounter="e1")


# -- users and clients ------------------------------------------------------------------------------------------


def test_users_round_trip_and_are_unique(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    ada = user("ada")
    store.add_user(ada)
    store.add_user(user("zed", kind="patient", roles=(), patient_id="p-z", practitioner_id=None, active=False))
    assert other.get_user("u-ada") == ada and other.get_user_by_username("ada") == ada
    assert other.get_user("u-nobody") is None and other.get_user_by_username("nobody") is None
    with pytest.raises(ValueError, match="exists"):
        other.add_user(replace(ada, username="ada2"))  # same id
    with pytest.raises(ValueError, match="exists"):
        other.add_user(replace(ada, id="u-other"))  # same username
    assert [u.username for u in other.list_users()] == ["ada", "zed"]
    assert other.get_user("u-zed") == user("zed", kind="patient", roles=(), patient_id="p-z", practitioner_id=None,
                                           active=False)


def test_login_state_and_password_are_shared(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_user(user())
    store.set_login_state("u-ada", 3, 0.0)
    assert other.get_user("u-ada") == replace(user(), failed_logins=3)
    other.set_login_state("u-ada", 0, 1_800_000_000.0)
    assert store.get_user("u-ada") == replace(user(), locked_until=1_800_000_000.0)
    store.set_password("u-ada", "$argon2id$new")
    assert other.get_user("u-ada") == replace(user(), password_hash="$argon2id$new")  # unlocked too


def test_login_failures_are_counted_across_hosts(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    for i, host in enumerate((store, other, store, other)):
        host.add_login_failure("addr:10.0.0.1", 1000.0 + i)
    other.add_login_failure("addr:10.0.0.2", 1001.0)
    assert store.count_login_failures("addr:10.0.0.1", 0.0) == 4
    assert other.count_login_failures("addr:10.0.0.1", 1002.0) == 2  # since is inclusive
    assert other.count_login_failures("addr:10.0.0.3", 0.0) == 0


def test_failed_logins_lock_after_the_maximum(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_user(user())
    assert [h.count_failed_login("u-ada", 3, 5000.0) for h in (store, other)] == [0.0, 0.0]
    assert other.get_user("u-ada").failed_logins == 2  # type: ignore[union-attr]
    assert store.count_failed_login("u-ada", 3, 5000.0) == 5000.0  # the third locks and starts again
    locked = other.get_user("u-ada")
    assert locked is not None and (locked.failed_logins, locked.locked_until) == (0, 5000.0)
    assert store.count_failed_login("nobody", 3, 5000.0) == 0.0


def test_racing_failed_logins_are_all_counted(hosts: tuple[AuthStore, AuthStore]) -> None:
    hosts[0].add_user(user())
    race(hosts, lambda s: s.count_failed_login("u-ada", 100, 5000.0))
    assert hosts[1].get_user("u-ada").failed_logins == RACERS  # type: ignore[union-attr]
    # at the maximum exactly one of the racers locks the account
    hosts[0].set_login_state("u-ada", 0, 0.0)
    assert hosts[0].count_failed_login("u-ada", RACERS, 5000.0) == 0.0  # one counted before the race
    after = race(hosts, lambda s: s.count_failed_login("u-ada", RACERS, 5000.0))
    state = hosts[1].get_user("u-ada")
    assert state is not None and state.locked_until == 5000.0 and state.failed_logins == 1
    assert after.count(0.0) < RACERS


def test_removing_a_user_ends_sessions_and_revokes_tokens_everywhere(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_user(user())
    store.add_session(Session("s1", "u-ada", 1_700_000_000, time.time() + 600))
    assert not other.is_revoked(["user:u-ada"])
    assert store.remove_user("u-ada") and not store.remove_user("u-ada")
    assert other.get_user("u-ada") is None and other.get_session("s1") is None
    assert store.is_revoked(["jti-x", "user:u-ada"])
    assert seen_within_recheck(lambda: other.is_revoked(["user:u-ada"]))


def test_clients_round_trip_and_are_unique(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_client(client("zeta", auth_method="none", jwks=None, secret_hash="abc", jwks_uri=None,
                            registration="dynamic"))
    store.add_client(client("alpha", jwks=None, jwks_uri="https://a.example/jwks"))
    with pytest.raises(ValueError, match="exists"):
        other.add_client(client("alpha"))
    assert other.get_client("alpha") == client("alpha", jwks=None, jwks_uri="https://a.example/jwks")
    assert [c.client_id for c in other.list_clients()] == ["alpha", "zeta"]
    assert other.get_client("zeta") == client("zeta", auth_method="none", jwks=None, secret_hash="abc",
                                              jwks_uri=None, registration="dynamic")
    assert other.get_client("nobody") is None


def test_removing_a_client_revokes_everything_issued_to_it(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_client(client())
    store.add_code(code("c1", grant_id="g-code"))
    store.add_refresh_token(refresh("r1", grant_id="g-refresh"))
    store.add_refresh_token(refresh("r2", grant_id="g-other", client_id="another"))
    assert store.remove_client("app") and not store.remove_client("app")
    assert other.get_client("app") is None and other.get_refresh_token("r1") is None
    assert other.take_code("c1", "app") is None
    assert store.is_revoked(["client:app"]) and store.is_revoked(["g-code"]) and store.is_revoked(["g-refresh"])
    assert seen_within_recheck(lambda: other.is_revoked(["g-refresh"]) and other.is_revoked(["client:app"]))
    assert not other.is_revoked(["g-other"]) and other.use_refresh_token("r2")  # another client's: untouched


# -- use once ---------------------------------------------------------------------------------------------------


def test_a_code_is_taken_once_and_a_replay_ends_its_grant(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    issued = code("c1", grant_id="g1")
    store.add_code(issued)
    store.add_refresh_token(refresh("r1", grant_id="g1"))
    assert other.take_code("c1", "another-client") is None  # wrong client: not used up
    assert other.take_code("nope", "app") is None
    assert other.take_code("c1", "app") == issued
    assert not store.is_revoked(["g1"])
    assert store.take_code("c1", "app") is None  # the replay ...
    assert store.is_revoked(["g1"]) and seen_within_recheck(lambda: other.is_revoked(["g1"]))  # ... ends the grant
    assert other.get_refresh_token("r1").revoked  # type: ignore[union-attr]
    assert not other.use_refresh_token("r1")


def test_an_expired_code_is_refused(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_code(code("old", expires_in=-1))
    assert other.take_code("old", "app") is None


def test_nonces_are_remembered_per_client(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_code(code("c1", nonce="n-1"))
    store.add_code(code("c2", nonce=None))
    assert other.nonce_used("app", "n-1")
    assert not other.nonce_used("another", "n-1") and not other.nonce_used("app", "n-2")


def test_racing_hosts_take_a_code_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    hosts[0].add_code(code("c-race", grant_id="g-race"))
    taken = race(hosts, lambda s: s.take_code("c-race", "app"))
    assert sum(t is not None for t in taken) == 1


def test_refresh_tokens_rotate_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    issued = refresh("r1", session_id="s1")
    store.add_refresh_token(issued)
    assert other.get_refresh_token("r1") == issued and other.get_refresh_token("nope") is None
    assert other.use_refresh_token("r1") and not store.use_refresh_token("r1")
    used = store.get_refresh_token("r1")
    assert used is not None and used.used_at is not None and abs(used.used_at - time.time()) < 60
    assert replace(used, used_at=None) == issued and used.is_revoked()
    assert not store.use_refresh_token("nope")


def test_a_revoked_refresh_token_cannot_be_used(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    store.add_refresh_token(refresh("r1", grant_id="g1"))
    store.add_refresh_token(refresh("r2", grant_id="g2"))
    store.add_refresh_token(refresh("r3", grant_id="g2"))
    store.add_refresh_token(refresh("r4", grant_id="g3"))
    other.revoke_refresh_token("r1")
    assert store.get_refresh_token("r1").revoked and not store.use_refresh_token("r1")  # type: ignore[union-attr]
    other.revoke_grant("g2", time.time() + 60)
    assert not store.use_refresh_token("r2") and not store.use_refresh_token("r3")
    assert store.use_refresh_token("r4")
    assert other.is_revoked(["g2"]) and seen_within_recheck(lambda: store.is_revoked(["g2"]))


def test_racing_hosts_rotate_a_refresh_token_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    hosts[0].add_refresh_token(refresh("r-race"))
    assert sorted(race(hosts, lambda s: s.use_refresh_token("r-race"))) == [False] * (RACERS - 1) + [True]


def test_a_client_assertion_jti_is_used_once_per_client(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    later = time.time() + 300
    assert store.use_jti("lab", "j1", later) and not other.use_jti("lab", "j1", later)
    assert other.use_jti("insurer", "j1", later) and other.use_jti("lab", "j2", later)


def test_racing_hosts_accept_a_jti_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    later = time.time() + 300
    assert sorted(race(hosts, lambda s: s.use_jti("lab", "j-race", later))) == [False] * (RACERS - 1) + [True]


def test_launches_are_used_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    launch = LaunchContext("l1", time.time() + 600, patient="p1", encounter="e1", user_id="u-doc",
                           client_id="app", need_patient_banner=False)
    store.add_launch(launch)
    assert other.get_launch("l1") == launch and other.get_launch("nope") is None
    assert other.use_launch("l1") and not store.use_launch("l1") and not store.use_launch("nope")
    assert store.get_launch("l1") == replace(launch, used=True)


def test_racing_hosts_use_a_launch_once(hosts: tuple[AuthStore, AuthStore]) -> None:
    hosts[0].add_launch(LaunchContext("l-race", time.time() + 600, patient="p1"))
    assert sorted(race(hosts, lambda s: s.use_launch("l-race"))) == [False] * (RACERS - 1) + [True]


# -- sessions, lists ---------------------------------------------------------------------------------------------


def test_ending_a_session_revokes_its_online_refresh_tokens(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    session = Session("s1", "u-ada", 1_700_000_000, time.time() + 600)
    store.add_session(session)
    store.add_refresh_token(refresh("online", session_id="s1"))
    store.add_refresh_token(refresh("offline", session_id=None))
    assert other.get_session("s1") == session and other.get_session("nope") is None
    other.end_session("s1")
    assert store.get_session("s1") is None
    assert not store.use_refresh_token("online") and store.use_refresh_token("offline")


def test_a_revocation_on_one_host_is_seen_on_the_other_within_the_recheck(
        hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    assert not other.is_revoked(["jti-1", "g-1"])  # cached now
    store.revoke_ids(["jti-1", "jti-2"], time.time() + 600)
    assert store.is_revoked(["jti-2"])  # the writer sees its own change at once
    assert seen_within_recheck(lambda: other.is_revoked(["x", "jti-1"]))
    assert not other.is_revoked(["jti-3", "g-1"]) and not other.is_revoked([])


def test_break_glass_is_seen_on_the_other_host(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    assert other.break_glass_until("u-doc") == 0.0
    store.grant_break_glass("u-doc", 2_000_000_000.0, "cardiac arrest", "u-doc", 1_999_999_000.0)
    assert store.break_glass_until("u-doc") == 2_000_000_000.0
    assert seen_within_recheck(lambda: other.break_glass_until("u-doc") == 2_000_000_000.0)
    other.grant_break_glass("u-doc", 2_000_000_500.0, "still", "u-root", 1_999_999_100.0)  # replaces
    assert seen_within_recheck(lambda: store.break_glass_until("u-doc") == 2_000_000_500.0)
    assert store.end_break_glass("u-doc") and not other.end_break_glass("u-doc")
    assert seen_within_recheck(lambda: other.break_glass_until("u-doc") == 0.0)


def test_purge_forgets_only_what_has_expired(hosts: tuple[AuthStore, AuthStore]) -> None:
    store, other = hosts
    now = time.time()
    store.add_code(code("old-code", expires_in=-86_401, nonce="old"))
    store.add_code(code("recent-code", expires_in=-10, nonce="recent"))  # kept a day: a replay still ends its grant
    store.add_refresh_token(refresh("old-r", expires_in=-1))
    store.add_refresh_token(refresh("live-r"))
    store.revoke_ids(["old-id"], now - 1)
    store.revoke_ids(["live-id"], now + 600)
    assert store.use_jti("lab", "old-j", now - 1) and store.use_jti("lab", "live-j", now + 600)
    store.add_launch(LaunchContext("old-l", now - 1))
    store.add_launch(LaunchContext("live-l", now + 600))
    store.add_session(Session("old-s", "u", 1, now - 1))
    store.add_session(Session("live-s", "u", 1, now + 600))
    store.add_login_failure("k", now - 86_401)
    store.add_login_failure("k", now - 10)
    store.grant_break_glass("old-u", now - 1, "r", "g", now - 100)
    store.grant_break_glass("live-u", now + 600, "r", "g", now)

    other.purge(now)
    assert not store.nonce_used("app", "old") and store.nonce_used("app", "recent")
    assert store.get_refresh_token("old-r") is None and store.get_refresh_token("live-r") is not None
    assert seen_within_recheck(lambda: not store.is_revoked(["old-id"])) and store.is_revoked(["live-id"])
    assert store.use_jti("lab", "old-j", now + 600) and not store.use_jti("lab", "live-j", now + 600)
    assert store.get_launch("old-l") is None and store.get_launch("live-l") is not None
    assert store.get_session("old-s") is None and store.get_session("live-s") is not None
    assert store.count_login_failures("k", 0.0) == 1
    assert store.break_glass_until("old-u") == 0.0 and store.break_glass_until("live-u") == now + 600


class _Finds(CommandListener):
    def __init__(self) -> None:
        self.collections: list[str] = []

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.collections.append(str(event.command["find"]))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def test_the_per_request_checks_on_mongodb_do_not_query_per_call() -> None:
    target = mongo_target()
    database = f"auth{uuid.uuid4().hex[:12]}"
    finds = _Finds()
    store = MongoAuthStore(target.url, database=database, event_listeners=[finds])
    writer = MongoAuthStore(target.url, database=database)
    store.open()
    writer.open()
    try:
        started = time.monotonic()
        for i in range(5000):
            assert not store.is_revoked([f"jti-{i}", "g-1"]) and store.break_glass_until("u-doc") == 0.0
        rechecks = (time.monotonic() - started) / LISTS_RECHECK_S + 1
        # at most one look at the generation per re-check interval; the lists themselves only read once
        assert finds.collections.count("auth_meta") <= rechecks + 1
        assert finds.collections.count("auth_revoked") == 1 == finds.collections.count("auth_break_glass")
        writer.revoke_ids(["jti-7"], time.time() + 60)
        assert seen_within_recheck(lambda: store.is_revoked(["jti-7"]))
        assert finds.collections.count("auth_revoked") == 2
    finally:
        store.drop()
        store.close()
        writer.close()

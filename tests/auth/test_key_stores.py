"""The signing keys on each ``KeyStore`` (the key file; one MongoDB document): hosts racing at first start agree on
one key, a rotation on one host is accepted at once by the others (unknown ``kid``) and signs there after the
re-check, ``FHIR_AUTH__SECRET`` still overrides the secret.  Token validation itself is in test_tokens.py."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fhir_server.auth import keys as keys_module
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.mongo_keys import MongoKeyStore
from fhir_server.auth.mongo_store import MongoAuthStore
from fhir_server.auth.tokens import InvalidToken, TokenValidator, mint_access_token
from tests.mongo_server import mongo_target

BASE = "https://fhir.example.org/fhir"
pytestmark = pytest.mark.filterwarnings("ignore:Key size should be")  # the small test keys (below)
RingFactory = Callable[..., KeyRing]


@pytest.fixture(autouse=True)
def small_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """1024-bit keys: what is tested is where keys live, not their strength; generating 2048-bit ones dominates."""
    monkeypatch.setattr(keys_module, "_KEY_BITS", 1024)


@pytest.fixture(params=["file", "mongodb"])
def rings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RingFactory]:
    """Makes key rings of different "hosts" on one shared key store."""
    if request.param == "file":
        yield lambda secret=None: KeyRing(tmp_path / "auth-keys.json", secret)
        return
    target = mongo_target()
    database = f"keys{uuid.uuid4().hex[:12]}"
    stores: list[MongoAuthStore] = []

    def make(secret: str | None = None) -> KeyRing:
        store = MongoAuthStore(target.url, database=database)
        store.open()
        stores.append(store)
        return KeyRing(MongoKeyStore(store), secret)

    try:
        yield make
    finally:
        if stores:
            stores[0].drop()
        for store in stores:
            store.close()


def _token(ring: KeyRing) -> str:
    token, _ = mint_access_token(ring, issuer=BASE, audience=BASE, subject="u-1", client_id="app",
                                 scope="patient/*.rs", lifetime_s=600, kind="patient")
    return token


def _valid(ring: KeyRing, token: str) -> bool:
    try:
        TokenValidator(ring, lambda ids: False).validate(token, audience=BASE, issuer=BASE)
    except InvalidToken:
        return False
    return True


def test_hosts_racing_at_first_start_agree_on_one_key(rings: RingFactory) -> None:
    hosts = [rings() for _ in range(4)]
    barrier = threading.Barrier(len(hosts))

    def start(ring: KeyRing) -> None:
        barrier.wait()
        ring.load()

    threads = [threading.Thread(target=start, args=(ring,)) for ring in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({ring.kid for ring in hosts}) == 1 and len({ring.secret for ring in hosts}) == 1
    assert len(hosts[0].public_jwks()["keys"]) == 1
    assert all("d" not in key for key in hosts[0].public_jwks()["keys"])  # never the private part
    assert _valid(hosts[1], _token(hosts[0]))


def test_the_configured_secret_overrides_the_shared_one(rings: RingFactory) -> None:
    shared, configured = rings(), rings("from-settings")
    shared.load()
    assert configured.secret == b"from-settings" != shared.secret and configured.kid == shared.kid


def test_a_rotation_on_one_host_is_accepted_on_the_others(rings: RingFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = rings(), rings()
    old_token = _token(a)
    assert _valid(b, old_token)
    old_kid = b.kid
    new_kid = a.rotate(retain_s=3600)
    assert a.kid == new_kid and b.kid == old_kid  # b has not looked again yet ...
    new_token = _token(a)
    assert _valid(b, new_token) and _valid(b, old_token)  # ... but an unknown kid is looked up at once
    assert b.kid == new_kid and {k["kid"] for k in b.public_jwks()["keys"]} == {new_kid, old_kid}
    newest = a.rotate(retain_s=3600)
    monkeypatch.setattr(keys_module, "_RECHECK_S", 0.0)
    assert b.kid == newest  # the periodic re-check: b signs with the newest key too
    b.rotate(retain_s=0)  # drop every retired key
    assert not _valid(a, old_token) and not _valid(a, new_token) and _valid(a, _token(b))


def test_concurrent_rotations_on_mongodb_lose_no_key(rings: RingFactory) -> None:
    hosts = [rings() for _ in range(4)]
    hosts[0].load()
    first = hosts[0].kid
    barrier = threading.Barrier(len(hosts))
    made: list[str] = []

    def rotate(ring: KeyRing) -> None:
        barrier.wait()
        made.append(ring.rotate(retain_s=3600))

    threads = [threading.Thread(target=rotate, args=(ring,)) for ring in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = hosts[0].store.read()
    assert found is not None
    kids = [entry["jwk"]["kid"] for entry in found[0]["keys"]]
    if isinstance(hosts[0].store, MongoKeyStore):  # compare-and-set: every rotation builds on the one before
        assert sorted(kids) == sorted([*made, first])
    else:  # the key file: rotations are one at a time (the administration API); the last writer wins
        assert kids[0] in made
    assert kids[0] in made and len(set(made)) == len(hosts)

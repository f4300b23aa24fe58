"""The auth store's operations on SQLite and on MongoDB: CPU and wall time per operation, in this process.

* ``is_revoked`` — the per-request check (a cached list; on MongoDB one look at the generation per 50 ms);
* ``use_jti`` — one client assertion (an insert against a unique index);
* ``take_code`` — one authorization code exchange (a conditional update);
* ``use_refresh_token`` — one refresh rotation;
* ``login failure`` — ``add_login_failure`` + ``count_login_failures`` (what a failed sign-in costs).

MongoDB is ``--mongodb-url`` (or ``FHIR_TEST_MONGODB_URL``), else the tests' emulator (mongo-java-server, in memory:
its figures say what the client side costs, not what a replica set's majority writes take).

    python bench/auth_store.py [--ops 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.auth.models import AuthCode, RefreshToken
from fhir_server.auth.mongo_store import MongoAuthStore
from fhir_server.auth.sqlite_store import SQLiteAuthStore
from fhir_server.auth.store import AuthStore


def _measure(label: str, ops: int, fn: Callable[[int], object]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(ops):
        fn(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  {label:<22} {cpu / ops * 1e6:9.1f} µs CPU/op {wall / ops * 1e6:9.1f} µs wall/op")


def _code(i: int) -> AuthCode:
    return AuthCode(f"code-{i}", "app", "https://a.example/cb", "patient/*.rs", "u", "c", "S256", time.time() + 60,
                    f"g-{i}", 0)


def _refresh(i: int) -> RefreshToken:
    now = time.time()
    return RefreshToken(f"rt-{i}", "app", "u", "patient/*.rs", f"g-{i}", now, now + 3600, 0)


def run(name: str, store: AuthStore, ops: int) -> None:
    print(f"{name}:")
    store.revoke_ids([f"old-{i}" for i in range(1000)], time.time() + 3600)
    ids = ["jti-x", "g-x", "client:app", "user:u"]
    _measure("is_revoked", ops * 50, lambda i: store.is_revoked(ids))
    later = time.time() + 300
    _measure("use_jti", ops, lambda i: store.use_jti("lab", f"j-{i}", later))
    for i in range(ops):
        store.add_code(_code(i))
        store.add_refresh_token(_refresh(i))
    _measure("take_code", ops, lambda i: store.take_code(f"code-{i}", "app"))
    _measure("use_refresh_token", ops, lambda i: store.use_refresh_token(f"rt-{i}"))

    def failure(i: int) -> None:
        store.add_login_failure("addr:10.0.0.1", time.time())
        store.count_login_failures("addr:10.0.0.1", time.time() - 300)

    _measure("login failure", ops, failure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--mongodb-url", default=os.environ.get("FHIR_TEST_MONGODB_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteAuthStore(Path(tmp) / "auth.db")
        sqlite.open()
        try:
            run("sqlite", sqlite, args.ops)
        finally:
            sqlite.close()
    url, kind = args.mongodb_url, "MongoDB"
    if not url:
        from tests.mongo_server import _EMULATOR

        url, kind = _EMULATOR.start(), "MongoDB emulator (mongo-java-server)"
    mongo = MongoAuthStore(url, database=f"bench{uuid.uuid4().hex[:12]}")
    mongo.open()
    try:
        run(kind, mongo, args.ops)
    finally:
        mongo.drop()
        mongo.close()


if __name__ == "__main__":
    main()

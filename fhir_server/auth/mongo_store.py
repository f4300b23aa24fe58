"""``AuthStore`` on MongoDB, so that every API host behind a load balancer shares the authorization server's state.

Collections ``auth_*`` (``_mongo_docs``) in the auth database: ``FHIR_AUTH__MONGODB_DATABASE``, by default the
database of ``FHIR_STORAGE__MONGODB_URL``.  The synchronous ``pymongo.MongoClient`` (the ``AuthStore`` protocol is
synchronous; authlib's grants call it from worker threads).

* Every "use once" operation is one atomic single-document operation — ``find_one_and_update`` / ``update_one``
  filtered on the unused state, or an insert against a unique index — so two hosts can never both use one code,
  refresh token, launch or client-assertion ``jti``.  Nothing needs a multi-document transaction: the operations
  that touch several documents (removing a user or a client, ending a session or a grant) revoke first and delete
  after, so a failure half-way leaves more revoked, never less, and running them again completes them.
* The revocation list and the break-glass grants, read on every FHIR request, are cached in memory like
  ``SQLiteAuthStore`` does: every change bumps a generation counter (``auth_meta``), which each host reads at most
  every ``LISTS_RECHECK_S`` (at once after its own writes), reading the lists again only when it moved.
* Expiry is ``purge(now)``, as on SQLite; no TTL index, so nothing depends on when the server's TTL monitor runs.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pymongo import MongoClient, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError
from pymongo.monitoring import CommandListener

from fhir_server.auth import _mongo_docs as d
from fhir_server.auth.models import AuthCode, Client, LaunchContext, RefreshToken, Session, User
from fhir_server.auth.sqlite_store import LISTS_RECHECK_S
from fhir_server.errors import ServiceUnavailable
from fhir_server.storage.mongo._schema import client_options

_T = TypeVar("_T")
_REVOKE_PEOPLE_S = 86_400  # how long "user:<id>" / "client:<id>" / a grant stay listed after a removal


class MongoAuthStoreError(RuntimeError):
    """The auth store cannot use the MongoDB it was given (unreachable, refused)."""


def _unavailable_on_driver_errors(cls: type[_T]) -> type[_T]:
    """Every public operation of the store answers a MongoDB outage with :class:`ServiceUnavailable` (503, retry
    later) instead of a driver exception that would become a 500; errors the store expects are handled inside."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not callable(method) or name in ("open", "close", "drop", "collection"):
            continue
        setattr(cls, name, _guarded(method))
    return cls


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except PyMongoError as exc:
            raise ServiceUnavailable("the authorization store is unavailable; retry later") from exc
    return call


@_unavailable_on_driver_errors
class MongoAuthStore:
    def __init__(self, url: str, *, database: str | None = None, server_selection_timeout_ms: int = 10_000,
                 event_listeners: Sequence[CommandListener] = ()) -> None:
        options, default_db = client_options(url)
        self.url = url
        self.database_name = database or default_db
        self._options: dict[str, Any] = {"serverSelectionTimeoutMS": server_selection_timeout_ms, **options}
        if event_listeners:  # command monitoring (tests, metrics)
            self._options["event_listeners"] = list(event_listeners)
        self._client: MongoClient[dict[str, Any]] | None = None
        self._db: Database[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._writes = 0  # this store's own list changes: re-read at once after them
        self._lists_checked = (-1, 0.0)
        self._generation: int | None = None
        self._revoked: frozenset[str] = frozenset()
        self._break_glass: dict[str, float] = {}

    # -- life cycle -----------------------------------------------------------------------------------------------

    def open(self) -> None:
        client: MongoClient[dict[str, Any]] = MongoClient(self.url, **self._options)
        try:
            db = client[self.database_name]
            existing = set(db.list_collection_names())
            for name in d.COLLECTIONS:
                if name not in existing:
                    with contextlib.suppress(CollectionInvalid):  # another host created it meanwhile
                        db.create_collection(name)
            for name, indexes in d.INDEXES.items():
                db[name].create_indexes(indexes)
            _ensure(db[d.META], d.LISTS_ID, {"gen": 0})
        except PyMongoError as exc:
            client.close()
            raise MongoAuthStoreError(f"cannot open the auth store on MongoDB database {self.database_name!r}: "
                                      f"{type(exc).__name__}") from exc
        self._client, self._db = client, db

    def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None:
            client.close()

    def drop(self) -> None:
        """Remove every auth collection (tests and tools)."""
        for name in d.COLLECTIONS:
            self._c(name).drop()

    def collection(self, name: str) -> Collection[dict[str, Any]]:
        if self._db is None:
            raise RuntimeError("the auth store is not open")
        return self._db[name]

    _c = collection

    def _changed_lists(self) -> None:
        """After a change of the revocation list or the break-glass grants: other hosts re-read at their next check."""
        self._c(d.META).update_one({"_id": d.LISTS_ID}, {"$inc": {"gen": 1}})
        self._writes += 1  # after the bump: a reader that saw this count also sees the new generation

    def _revoke(self, ids: Sequence[str], until: float) -> None:
        if ids:
            self._c(d.REVOKED).bulk_write(
                [UpdateOne({"_id": i}, {"$set": {"until": until}}, upsert=True) for i in ids], ordered=False)
        self._changed_lists()

    # -- users ----------------------------------------------------------------------------------------------------

    def add_user(self, user: User) -> None:
        try:
            self._c(d.USERS).insert_one(d.user_doc(user))
        except DuplicateKeyError as exc:
            raise ValueError(f"a user with id {user.id!r} or username {user.username!r} exists") from exc

    def get_user(self, user_id: str) -> User | None:
        return d.user(self._c(d.USERS).find_one({"_id": user_id}))

    def get_user_by_username(self, username: str) -> User | None:
        return d.user(self._c(d.USERS).find_one({"username": username}))

    def list_users(self) -> list[User]:
        return [u for u in map(d.user, self._c(d.USERS).find().sort("username", 1)) if u is not None]

    def remove_user(self, user_id: str) -> bool:
        self._revoke([f"user:{user_id}"], time.time() + _REVOKE_PEOPLE_S)  # the user's access tokens die first
        self._c(d.SESSIONS).delete_many({"user_id": user_id})
        return self._c(d.USERS).delete_one({"_id": user_id}).deleted_count > 0

    def set_login_state(self, user_id: str, failed_logins: int, locked_until: float) -> None:
        self._c(d.USERS).update_one({"_id": user_id},
                                    {"$set": {"failed_logins": failed_logins, "locked_until": locked_until}})

    def count_failed_login(self, user_id: str, max_failures: int, locked_until: float) -> float:
        users = self._c(d.USERS)
        while True:  # compare-and-set on the count: a failure counted meanwhile by another host makes it retry
            doc = users.find_one({"_id": user_id}, {"failed_logins": 1, "locked_until": 1})
            if doc is None:
                return 0.0
            count = int(doc.get("failed_logins", 0))
            lock = count + 1 >= max_failures
            new = {"failed_logins": 0 if lock else count + 1,
                   "locked_until": locked_until if lock else float(doc.get("locked_until", 0.0))}
            if users.update_one({"_id": user_id, "failed_logins": count}, {"$set": new}).matched_count:
                return float(new["locked_until"])

    def set_password(self, user_id: str, password_hash: str) -> None:
        self._c(d.USERS).update_one({"_id": user_id}, {"$set": {"password_hash": password_hash, "failed_logins": 0,
                                                                 "locked_until": 0.0}})

    # -- clients --------------------------------------------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        try:
            self._c(d.CLIENTS).insert_one(d.client_doc(client))
        except DuplicateKeyError as exc:
            raise ValueError(f"a client with id {client.client_id!r} exists") from exc

    def get_client(self, client_id: str) -> Client | None:
        return d.client(self._c(d.CLIENTS).find_one({"_id": client_id}))

    def list_clients(self) -> list[Client]:
        return [c for c in map(d.client, self._c(d.CLIENTS).find().sort("_id", 1)) if c is not None]

    def remove_client(self, client_id: str) -> bool:
        until = time.time() + _REVOKE_PEOPLE_S
        self._revoke([f"client:{client_id}"], until)  # its access tokens die at once, whatever happens next
        grants = {str(g) for name in (d.REFRESH, d.CODES)
                  for g in self._c(name).distinct("grant_id", {"client_id": client_id})}
        self._revoke(sorted(grants), until)
        self._c(d.REFRESH).delete_many({"client_id": client_id})
        self._c(d.CODES).delete_many({"client_id": client_id})
        return self._c(d.CLIENTS).delete_one({"_id": client_id}).deleted_count > 0

    # -- codes ----------------------------------------------------------------------------------------------------

    def add_code(self, code: AuthCode) -> None:
        self._c(d.CODES).insert_one(d.code_doc(code))

    def take_code(self, code_hash: str, client_id: str) -> AuthCode | None:
        codes = self._c(d.CODES)
        taken = codes.find_one_and_update({"_id": code_hash, "client_id": client_id, "used": False},
                                          {"$set": {"used": True}}, return_document=ReturnDocument.BEFORE)
        if taken is None:
            used = codes.find_one({"_id": code_hash, "client_id": client_id}, {"grant_id": 1})
            if used is not None:  # it exists for this client, so it was used before: a replay ends the grant
                self.revoke_grant(str(used["grant_id"]), time.time() + 86_400)
            return None
        if float(taken["expires_at"]) <= time.time():
            return None
        return AuthCode(**taken["record"])

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return self._c(d.CODES).find_one({"client_id": client_id, "nonce": nonce}, {"_id": 1}) is not None

    # -- refresh tokens -------------------------------------------------------------------------------------------

    def add_refresh_token(self, token: RefreshToken) -> None:
        self._c(d.REFRESH).insert_one(d.refresh_doc(token))

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return d.refresh_token(self._c(d.REFRESH).find_one({"_id": token_hash}))

    def use_refresh_token(self, token_hash: str) -> bool:
        done = self._c(d.REFRESH).update_one({"_id": token_hash, "used_at": None, "revoked": False},
                                             {"$set": {"used_at": time.time()}})
        return done.modified_count == 1

    def revoke_refresh_token(self, token_hash: str) -> None:
        self._c(d.REFRESH).update_one({"_id": token_hash}, {"$set": {"revoked": True}})

    def revoke_grant(self, grant_id: str, until: float) -> None:
        self._revoke([grant_id], until)  # the grant's access tokens first, then its refresh tokens
        self._c(d.REFRESH).update_many({"grant_id": grant_id}, {"$set": {"revoked": True}})

    # -- revocation list ------------------------------------------------------------------------------------------

    def revoke_ids(self, ids: list[str], until: float) -> None:
        self._revoke(ids, until)

    def _lists(self) -> None:
        """Read the revocation list and the break-glass grants again when another host (or this one) changed them."""
        now = time.monotonic()
        writes, checked = self._lists_checked
        if writes == self._writes and now - checked < LISTS_RECHECK_S:
            return
        with self._lock:
            writes, checked = self._lists_checked
            if writes == self._writes and now - checked < LISTS_RECHECK_S:
                return  # another thread looked meanwhile
            seen = self._writes
            # a driver error here becomes ServiceUnavailable in the public method (_unavailable_on_driver_errors)
            meta = self._c(d.META).find_one({"_id": d.LISTS_ID})
            generation = int(meta["gen"]) if meta else -1
            if generation != self._generation:  # read after the counter: a change in between is seen next time
                revoked = frozenset(str(r["_id"]) for r in self._c(d.REVOKED).find({}, {"_id": 1}))
                glass = {str(r["_id"]): float(r["until"]) for r in self._c(d.BREAK_GLASS).find({}, {"until": 1})}
                self._revoked, self._break_glass, self._generation = revoked, glass, generation
            self._lists_checked = (seen, now)

    def is_revoked(self, ids: Sequence[str]) -> bool:
        self._lists()
        return not self._revoked.isdisjoint(ids)

    # -- client assertions ----------------------------------------------------------------------------------------

    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        try:
            self._c(d.JTIS).insert_one({"client_id": client_id, "jti": jti, "expires_at": expires_at})
        except DuplicateKeyError:
            return False
        return True

    # -- launch contexts ------------------------------------------------------------------------------------------

    def add_launch(self, launch: LaunchContext) -> None:
        self._c(d.LAUNCHES).insert_one(d.launch_doc(launch))

    def get_launch(self, launch_id: str) -> LaunchContext | None:
        return d.launch(self._c(d.LAUNCHES).find_one({"_id": launch_id}))

    def use_launch(self, launch_id: str) -> bool:
        done = self._c(d.LAUNCHES).update_one({"_id": launch_id, "used": False}, {"$set": {"used": True}})
        return done.modified_count == 1

    # -- sessions -------------------------------------------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self._c(d.SESSIONS).insert_one({"_id": session.session_id, "user_id": session.user_id,
                                        "auth_time": session.auth_time, "expires_at": session.expires_at})

    def get_session(self, session_id: str) -> Session | None:
        doc = self._c(d.SESSIONS).find_one({"_id": session_id})
        if doc is None:
            return None
        return Session(str(doc["_id"]), str(doc["user_id"]), int(doc["auth_time"]), float(doc["expires_at"]))

    def end_session(self, session_id: str) -> None:
        self._c(d.REFRESH).update_many({"session_id": session_id}, {"$set": {"revoked": True}})
        self._c(d.SESSIONS).delete_one({"_id": session_id})

    # -- login throttling -----------------------------------------------------------------------------------------

    def add_login_failure(self, key: str, at: float) -> None:
        self._c(d.FAILURES).insert_one({"key": key, "at": at})

    def count_login_failures(self, key: str, since: float) -> int:
        return int(self._c(d.FAILURES).count_documents({"key": key, "at": {"$gte": since}}))

    # -- break-glass ----------------------------------------------------------------------------------------------

    def grant_break_glass(self, user_id: str, until: float, reason: str, granted_by: str, at: float) -> None:
        self._c(d.BREAK_GLASS).replace_one(
            {"_id": user_id}, {"until": until, "reason": reason, "granted_by": granted_by, "granted_at": at},
            upsert=True)
        self._changed_lists()

    def break_glass_until(self, user_id: str) -> float:
        self._lists()
        return self._break_glass.get(user_id, 0.0)

    def end_break_glass(self, user_id: str) -> bool:
        gone = self._c(d.BREAK_GLASS).delete_one({"_id": user_id}).deleted_count > 0
        self._changed_lists()
        return gone

    # -- housekeeping ---------------------------------------------------------------------------------------------

    def purge(self, now: float) -> None:
        self._c(d.BREAK_GLASS).delete_many({"until": {"$lt": now}})
        self._c(d.CODES).delete_many({"expires_at": {"$lt": now - 86_400}})
        self._c(d.REFRESH).delete_many({"expires_at": {"$lt": now}})
        self._c(d.REVOKED).delete_many({"until": {"$lt": now}})
        self._c(d.JTIS).delete_many({"expires_at": {"$lt": now}})
        self._c(d.LAUNCHES).delete_many({"expires_at": {"$lt": now}})
        self._c(d.SESSIONS).delete_many({"expires_at": {"$lt": now}})
        self._c(d.FAILURES).delete_many({"at": {"$lt": now - 86_400}})
        self._changed_lists()


def _ensure(collection: Collection[dict[str, Any]], doc_id: str, fields: dict[str, Any]) -> None:
    """Create a document unless it exists (several hosts may race: one insert wins, the others change nothing)."""
    with contextlib.suppress(DuplicateKeyError):
        collection.update_one({"_id": doc_id}, {"$setOnInsert": fields}, upsert=True)

"""The signing keys and the HMAC secret in one MongoDB document, shared by every API host (``KeyStore`` for
``fhir_server.auth.keys.KeyRing`` when the auth store is MongoDB).

The document ``{_id: "signing", v: <version>, doc: {"keys": [...], "secret": ...}}`` in ``auth_keys`` holds
private keys: the MongoDB deployment must require authentication and TLS (docs/auth.md).  It is created with an
upsert that only inserts (``$setOnInsert``), so hosts racing at first start agree on one key; a rotation replaces it
only when its version is still the one read (compare-and-set), so two concurrent rotations cannot lose a key.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fhir_server.auth import _mongo_docs as d
from fhir_server.auth.mongo_store import MongoAuthStore

_ID = "signing"


class MongoKeyStore:
    def __init__(self, store: MongoAuthStore) -> None:
        self._store = store  # its collection is looked up when first needed: the store opens after this is made

    @property
    def _keys(self) -> Collection[dict[str, Any]]:
        return self._store.collection(d.KEYS)

    def read(self) -> tuple[dict[str, Any], object] | None:
        found = self._keys.find_one({"_id": _ID})
        if found is None:
            return None
        doc: dict[str, Any] = found["doc"]
        return doc, int(found["v"])

    def stamp(self) -> object:
        found = self._keys.find_one({"_id": _ID}, {"v": 1})
        return None if found is None else int(found["v"])

    def create(self, doc: dict[str, Any]) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another host inserted it at the same moment: it stands
            self._keys.update_one({"_id": _ID}, {"$setOnInsert": {"v": 1, "doc": doc}}, upsert=True)

    def replace(self, doc: dict[str, Any], stamp: object) -> bool:
        done = self._keys.update_one({"_id": _ID, "v": stamp}, {"$set": {"doc": doc}, "$inc": {"v": 1}})
        return done.modified_count == 1

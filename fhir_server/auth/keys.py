"""The server's signing keys and its HMAC secret, kept in one file in the data directory (never in the repository).

The file (``<data_dir>/auth-keys.json`` by default, mode 0600) is created when a key is first needed, by whichever
process gets there first (an atomic create-if-absent, so several workers agree on one key).  It holds::

    {"keys": [{private JWK, "created": 1700000000, "retired": null}, ...], "secret": "<random, base64url>"}

The newest key signs; older keys stay published in the JWKS and accepted for verification until every token
they signed has expired (``retain_s`` after their retirement), then ``rotate`` drops them.  Each process notices a
rotation made by another one by re-reading the file when its modification time changes (checked at most every
few seconds, and at once when a token names an unknown ``kid``).

Where the document lives is a ``KeyStore``: this file (``FileKeyStore``, the default) or, when the auth store is on
MongoDB, one document shared by every API host (``fhir_server.auth.mongo_keys.MongoKeyStore``) with the same
guarantees: created once by whichever host gets there first, a rotation seen by the others within seconds (at once
when a token names an unknown ``kid``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from joserfc.jwk import KeySet, RSAKey

#: the algorithm of every token this server signs (access tokens and id tokens)
SIGNING_ALG = "RS256"
_KEY_BITS = 2048
_RECHECK_S = 5.0
_ROTATE_ATTEMPTS = 20


class KeyStore(Protocol):
    """Where the key document is kept.  ``stamp`` is a cheap version of the document that changes with it."""

    def read(self) -> tuple[dict[str, Any], object] | None:
        """The document and its stamp; None when there is none yet."""

    def stamp(self) -> object: ...

    def create(self, doc: dict[str, Any]) -> None:
        """Store ``doc`` unless a document exists (another process won the race: keep its document)."""

    def replace(self, doc: dict[str, Any], stamp: object) -> bool:
        """Replace the document read at ``stamp``; False when it changed meanwhile (read it again and retry)."""


class FileKeyStore:
    """The key document in a file (mode 0600), replaced atomically (rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[dict[str, Any], object] | None:
        try:
            stamp = self.stamp()
            return json.loads(self.path.read_text()), stamp
        except FileNotFoundError:
            return None

    def stamp(self) -> object:
        return self.path.stat().st_mtime_ns

    def create(self, doc: dict[str, Any]) -> None:
        _create_exclusive(self.path, doc)

    def replace(self, doc: dict[str, Any], stamp: object) -> bool:
        _replace(self.path, doc)  # processes sharing a file rotate one at a time (the administration API)
        return True


@dataclass(frozen=True)
class _Material:
    signing: RSAKey
    verifying: KeySet
    public_jwks: dict[str, Any]
    secret: bytes
    stamp: object


class KeyRing:
    def __init__(self, source: Path | KeyStore, secret_override: str | None = None) -> None:
        self.store: KeyStore = FileKeyStore(source) if isinstance(source, Path) else source
        self._secret_override = secret_override.encode() if secret_override else None
        self._lock = threading.Lock()
        self._material: _Material | None = None
        self._checked = 0.0

    # -- loading ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the key document, creating it with a fresh key and secret when absent."""
        if self.store.read() is None:
            self.store.create(_new_document())
        self._reload(force=True)

    def _reload(self, force: bool = False) -> _Material:
        with self._lock:
            now = time.monotonic()
            material = self._material
            if material is not None and not force and now - self._checked < _RECHECK_S:
                return material
            self._checked = now
            if material is not None and not force and self.store.stamp() == material.stamp:
                return material
            found = self.store.read()
            if found is None:
                raise RuntimeError("the signing key document has disappeared")
            material = self._material = _parse(found[0], found[1], self._secret_override)
            return material

    @property
    def _current(self) -> _Material:
        if self._material is None:
            self.load()  # first use in this process
        return self._reload()

    # -- use ------------------------------------------------------------------------------------------------------

    @property
    def signing_key(self) -> RSAKey:
        return self._current.signing

    @property
    def kid(self) -> str:
        kid = self._current.signing.kid
        assert kid is not None
        return kid

    def verification_keys(self, kid: str | None = None) -> KeySet:
        """The keys tokens may be signed with; re-reads the file once when ``kid`` is not among them."""
        material = self._current
        if kid is not None and all(k.kid != kid for k in material.verifying.keys):
            material = self._reload(force=True)
        return material.verifying

    def public_jwks(self) -> dict[str, Any]:
        return self._current.public_jwks

    @property
    def secret(self) -> bytes:
        """The HMAC secret for cookies and CSRF tokens (``FHIR_AUTH__SECRET`` when set)."""
        return self._current.secret

    # -- rotation -------------------------------------------------------------------------------------------------

    def rotate(self, retain_s: int) -> str:
        """Make a new signing key; the old one is retired and kept ``retain_s`` for verification.  Returns the new
        key's ``kid``."""
        fresh = _new_key_entry(int(time.time()))
        with self._lock:
            for _ in range(_ROTATE_ATTEMPTS):  # another host rotating at the same time: build on its document
                found = self.store.read()
                if found is None:
                    raise RuntimeError("there are no signing keys to rotate")
                doc, stamp = found
                if self.store.replace(_rotated(doc, fresh, retain_s), stamp):
                    break
            else:
                raise RuntimeError("the signing keys kept changing during the rotation; try again")
        self._reload(force=True)
        return str(fresh["jwk"]["kid"])


def _rotated(doc: dict[str, Any], fresh: dict[str, Any], retain_s: int) -> dict[str, Any]:
    """``doc`` with ``fresh`` signing; the keys before it retired now and kept while younger than ``retain_s``."""
    now = int(fresh["created"])
    kept = []
    for entry in doc["keys"]:
        if entry.get("retired") is None:
            entry = {**entry, "retired": now}
        if now - int(entry["retired"]) < retain_s:
            kept.append(entry)
    return {**doc, "keys": [fresh, *kept]}


def _new_key_entry(now: int) -> dict[str, Any]:
    key = RSAKey.generate_key(_KEY_BITS, {"use": "sig", "alg": SIGNING_ALG}, private=True, auto_kid=True)
    return {"jwk": key.as_dict(private=True), "created": now, "retired": None}


def _new_document() -> dict[str, Any]:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return {"keys": [_new_key_entry(int(time.time()))], "secret": secret}


def _parse(doc: dict[str, Any], stamp: object, secret_override: bytes | None) -> _Material:
    keys = [RSAKey.import_key(entry["jwk"]) for entry in doc["keys"]]
    if not keys:
        raise ValueError("the key file holds no keys")
    verifying = KeySet(list(keys))
    public = {"keys": [{**k.as_dict(private=False), "use": "sig", "alg": SIGNING_ALG} for k in keys]}
    secret = secret_override or str(doc["secret"]).encode()
    return _Material(keys[0], verifying, public, secret, stamp)


def _create_exclusive(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` unless the file exists (then another process won the race: keep its file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-keys-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _replace(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-keys-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

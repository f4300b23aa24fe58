"""Records of the authorization server ↔ MongoDB documents, and the collections and indexes ``MongoAuthStore`` uses.

Every collection lives under the ``auth_`` prefix in the auth database (by default the FHIR database).  A record
that is only ever read whole is kept as a sub-document ``record`` beside the fields that are filtered on.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING, IndexModel

from fhir_server.auth.models import AuthCode, Client, LaunchContext, RefreshToken, User

PREFIX = "auth_"
USERS = PREFIX + "users"
CLIENTS = PREFIX + "clients"
CODES = PREFIX + "codes"
REFRESH = PREFIX + "refresh_tokens"
REVOKED = PREFIX + "revoked"
JTIS = PREFIX + "jtis"
LAUNCHES = PREFIX + "launches"
SESSIONS = PREFIX + "sessions"
FAILURES = PREFIX + "login_failures"
BREAK_GLASS = PREFIX + "break_glass"
META = PREFIX + "meta"  # {_id: "lists", gen}: bumped after every change of the revocation list or break-glass
KEYS = PREFIX + "keys"  # {_id: "signing", v, doc}: the signing keys and the HMAC secret (fhir_server/auth/keys.py)
LISTS_ID = "lists"


def _idx(name: str, *fields: str, unique: bool = False) -> IndexModel:
    return IndexModel([(f, ASCENDING) for f in fields], name=name, unique=unique)


# where SQLite has a PRIMARY KEY the document's _id is that key; these are the other UNIQUE constraints and indexes
INDEXES: dict[str, list[IndexModel]] = {
    USERS: [_idx("username", "username", unique=True)],
    CODES: [_idx("nonce", "client_id", "nonce"), _idx("client", "client_id"), _idx("expires", "expires_at")],
    REFRESH: [_idx("grant", "grant_id"), _idx("session", "session_id"), _idx("client", "client_id"),
              _idx("expires", "expires_at")],
    REVOKED: [_idx("until", "until")],
    JTIS: [_idx("client_jti", "client_id", "jti", unique=True), _idx("expires", "expires_at")],
    LAUNCHES: [_idx("expires", "expires_at")],
    SESSIONS: [_idx("user", "user_id"), _idx("expires", "expires_at")],
    FAILURES: [_idx("key_at", "key", "at"), _idx("at", "at")],
    BREAK_GLASS: [_idx("until", "until")],
}
COLLECTIONS = (USERS, CLIENTS, CODES, REFRESH, REVOKED, JTIS, LAUNCHES, SESSIONS, FAILURES, BREAK_GLASS, META, KEYS)


def user_doc(user: User) -> dict[str, Any]:
    doc = asdict(user)
    doc["_id"] = doc.pop("id")
    doc["roles"] = list(user.roles)
    return doc


def user(doc: dict[str, Any] | None) -> User | None:
    if doc is None:
        return None
    return User(doc["_id"], doc["username"], doc["password_hash"], doc["kind"], doc["display_name"],
                tuple(doc["roles"]), doc.get("patient_id"), doc.get("practitioner_id"),
                doc.get("practitioner_role_id"), bool(doc["active"]), int(doc["failed_logins"]),
                float(doc["locked_until"]), float(doc["created_at"]))


def client_doc(client: Client) -> dict[str, Any]:
    doc = asdict(client)
    doc["_id"] = doc.pop("client_id")
    doc["redirect_uris"] = list(client.redirect_uris)
    doc["grant_types"] = list(client.grant_types)
    return doc


def client(doc: dict[str, Any] | None) -> Client | None:
    if doc is None:
        return None
    return Client(doc["_id"], doc["name"], doc["auth_method"], doc["scope"], tuple(doc["redirect_uris"]),
                  tuple(doc["grant_types"]), doc.get("secret_hash"), doc.get("jwks"), doc.get("jwks_uri"),
                  doc["registration"], float(doc["created_at"]))


def code_doc(code: AuthCode) -> dict[str, Any]:
    return {"_id": code.code_hash, "client_id": code.client_id, "used": False, "expires_at": code.expires_at,
            "grant_id": code.grant_id, "nonce": code.nonce, "record": asdict(code)}


def refresh_doc(token: RefreshToken) -> dict[str, Any]:
    record = asdict(token)
    used_at, revoked = record.pop("used_at"), record.pop("revoked")
    return {"_id": token.token_hash, "client_id": token.client_id, "grant_id": token.grant_id,
            "session_id": token.session_id, "expires_at": token.expires_at, "used_at": used_at,
            "revoked": bool(revoked), "record": record}


def refresh_token(doc: dict[str, Any] | None) -> RefreshToken | None:
    if doc is None:
        return None
    return RefreshToken(**{**doc["record"], "used_at": doc.get("used_at"), "revoked": bool(doc["revoked"])})


def launch_doc(launch: LaunchContext) -> dict[str, Any]:
    record = asdict(launch)
    used = record.pop("used")
    return {"_id": launch.launch_id, "expires_at": launch.expires_at, "used": bool(used), "record": record}


def launch(doc: dict[str, Any] | None) -> LaunchContext | None:
    if doc is None:
        return None
    return LaunchContext(**{**doc["record"], "used": bool(doc["used"])})

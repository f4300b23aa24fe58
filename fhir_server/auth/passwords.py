"""Passwords (argon2id, memory-hard) and the login guard: throttling per client address, lockout per account.

The guard answers the same "invalid username or password" for an unknown user as for a wrong password, and spends
the same argon2 work on both, so neither the answer nor its timing tells which usernames exist.  A locked account
or a throttled address gets "too many failed attempts", whatever the password.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhir_server.auth.models import User
from fhir_server.auth.store import AuthStore

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters (RFC 9106)
MIN_PASSWORD_LENGTH = 8


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class LoginResult:
    outcome: Literal["ok", "invalid", "locked", "throttled"]
    user: User | None = None


class LoginGuard:
    def __init__(self, store: AuthStore, *, max_failures: int, lockout_s: int, window_s: int,
                 max_failures_per_address: int) -> None:
        self.store = store
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.window_s = window_s
        self.max_failures_per_address = max_failures_per_address

    def login(self, username: str, password: str, address: str, now: float | None = None) -> LoginResult:
        """Check a username and password (blocking: argon2 takes tens of milliseconds; call from a thread)."""
        now = time.time() if now is None else now
        address_key = f"addr:{address}"
        if self.store.count_login_failures(address_key, now - self.window_s) >= self.max_failures_per_address:
            return LoginResult("throttled")
        user = self.store.get_user_by_username(username)
        if user is None or not user.active:
            verify_password(_dummy_hash(), password)
            self.store.add_login_failure(address_key, now)
            return LoginResult("invalid")
        if user.locked_until > now:
            self.store.add_login_failure(address_key, now)
            return LoginResult("locked")
        if not verify_password(user.password_hash, password):
            self.store.add_login_failure(address_key, now)
            if self.store.count_failed_login(user.id, self.max_failures, now + self.lockout_s) > now:
                return LoginResult("locked")
            return LoginResult("invalid")
        if user.failed_logins or user.locked_until:
            self.store.set_login_state(user.id, 0, 0.0)
        if needs_rehash(user.password_hash):
            self.store.set_password(user.id, _HASHER.hash(password))
        return LoginResult("ok", user)

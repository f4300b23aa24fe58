"""The narrow storage interface of the authorization server.

Auth state is not FHIR data, so it is kept apart from the FHIR repository: in its own small SQLite file beside the
FHIR store (``sqlite_store.SQLiteAuthStore``), or, for several API hosts, in ``auth_*`` collections on MongoDB
(``mongo_store.MongoAuthStore``; ``FHIR_AUTH__STORE``).  ``tests/auth/test_store_contract.py`` holds both to the
same behaviour.  They are synchronous and short (primary-key look-ups and single-row writes): authlib's grants call them
from a worker thread, and the per-request revocation check calls ``is_revoked`` inline.

Secrets never reach the store in clear: codes, refresh tokens and client secrets are kept as their SHA-256, user
passwords as argon2 hashes.  Every "take" method is atomic, so two concurrent requests cannot both use one code,
one refresh token, one launch or one client-assertion ``jti``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fhir_server.auth.models import AuthCode, Client, LaunchContext, RefreshToken, Session, User


class AuthStore(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    # users
    def add_user(self, user: User) -> None:
        """Insert; ``ValueError`` when the id or username is taken."""

    def get_user(self, user_id: str) -> User | None: ...

    def get_user_by_username(self, username: str) -> User | None: ...

    def list_users(self) -> list[User]: ...

    def remove_user(self, user_id: str) -> bool:
        """Delete the user, end their sessions and revoke their tokens."""

    def set_login_state(self, user_id: str, failed_logins: int, locked_until: float) -> None: ...

    def count_failed_login(self, user_id: str, max_failures: int, locked_until: float) -> float:
        """Count one failed password for the user, atomically (logins on other hosts or threads race): the
        ``max_failures``-th in a row locks the account until ``locked_until`` and starts the count again.  Answers
        the user's ``locked_until`` afterwards (0 for an unknown user)."""

    def set_password(self, user_id: str, password_hash: str) -> None: ...

    # clients
    def add_client(self, client: Client) -> None:
        """Insert; ``ValueError`` when the client id is taken."""

    def get_client(self, client_id: str) -> Client | None: ...

    def list_clients(self) -> list[Client]: ...

    def remove_client(self, client_id: str) -> bool:
        """Delete the client and revoke everything issued to it."""

    # authorization codes
    def add_code(self, code: AuthCode) -> None: ...

    def take_code(self, code_hash: str, client_id: str) -> AuthCode | None:
        """The code, marked used, when it exists, was issued to ``client_id``, is unused and unexpired.  A second
        use of a code revokes the grant it started (RFC 6749 §4.1.2) and answers None."""

    def nonce_used(self, client_id: str, nonce: str) -> bool: ...

    # refresh tokens
    def add_refresh_token(self, token: RefreshToken) -> None: ...

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None: ...

    def use_refresh_token(self, token_hash: str) -> bool:
        """Mark the token used (rotation); False when it was used or revoked already."""

    def revoke_refresh_token(self, token_hash: str) -> None: ...

    def revoke_grant(self, grant_id: str, until: float) -> None:
        """Revoke every refresh token of a grant, and the access tokens it issued (their ``grant_id`` claim)."""

    # revoked access tokens (by jti or grant id), kept until the tokens would have expired anyway
    def revoke_ids(self, ids: list[str], until: float) -> None: ...

    def is_revoked(self, ids: Sequence[str]) -> bool:
        """Whether any of ``ids`` (a token's jti, its grant id, ``client:<client_id>``, ``user:<user id>``) was
        revoked."""

    # client assertions
    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Record a client assertion's ``jti``; False when this client used it before (a replay)."""

    # launch contexts (EHR launch)
    def add_launch(self, launch: LaunchContext) -> None: ...

    def get_launch(self, launch_id: str) -> LaunchContext | None: ...

    def use_launch(self, launch_id: str) -> bool:
        """Mark a launch used; False when it was used before."""

    # browser sessions
    def add_session(self, session: Session) -> None: ...

    def get_session(self, session_id: str) -> Session | None: ...

    def end_session(self, session_id: str) -> None:
        """Delete the session and revoke the ``online_access`` refresh tokens bound to it."""

    # login throttling
    def add_login_failure(self, key: str, at: float) -> None: ...

    def count_login_failures(self, key: str, since: float) -> int: ...

    # break-glass: a user's time-limited emergency access (fhir_server/auth/break_glass.py)
    def grant_break_glass(self, user_id: str, until: float, reason: str, granted_by: str, at: float) -> None:
        """Grant (or replace) the user's break-glass until ``until`` (epoch seconds)."""

    def break_glass_until(self, user_id: str) -> float:
        """When the user's break-glass ends (0.0: none; compare with the time)."""

    def end_break_glass(self, user_id: str) -> bool: ...

    # housekeeping
    def purge(self, now: float) -> None:
        """Forget what has expired (codes, tokens, jtis, launches, sessions, old failures)."""

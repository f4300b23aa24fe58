"""Access tokens and signing keys, without HTTP: claims, validation, revocation, the key file, rotation."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from fhir_server.auth.keys import KeyRing
from fhir_server.auth.tokens import (
    AccessContext,
    InvalidToken,
    TokenValidator,
    bearer_token,
    mint_access_token,
)

BASE = "https://fhir.example.org/fhir"


class Revocations:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.asked: list[tuple[str, ...]] = []

    def __call__(self, ids: Sequence[str]) -> bool:
        self.asked.append(tuple(ids))
        return any(i in self.ids for i in ids)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    keys = KeyRing(tmp_path / "auth-keys.json")
    keys.load()
    return keys


def _mint(ring: KeyRing, **overrides: object) -> str:
    args: dict[str, object] = {"issuer": BASE, "audience": BASE, "subject": "u-1", "client_id": "app",
                               "scope": "patient/Observation.rs?category=laboratory launch/patient openid",
                               "lifetime_s": 600, "kind": "patient", "fhir_user": "Patient/p1", "patient": "p1",
                               "grant_id": "g-1"}
    args.update(overrides)
    token, _ = mint_access_token(ring, **args)  # type: ignore[arg-type]
    return token


def test_the_key_file_is_private_and_made_once(tmp_path: Path, ring: KeyRing) -> None:
    path = tmp_path / "auth-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert len(doc["keys"]) == 1 and doc["keys"][0]["jwk"]["d"] and doc["secret"]
    again = KeyRing(path)
    again.load()  # another process: reads the same file, makes nothing new
    assert again.kid == ring.kid and again.secret == ring.secret
    assert all("d" not in k for k in ring.public_jwks()["keys"])


def test_a_configured_secret_overrides_the_generated_one(tmp_path: Path, ring: KeyRing) -> None:
    configured = KeyRing(tmp_path / "auth-keys.json", secret_override="from-settings")
    configured.load()
    assert configured.secret == b"from-settings" != ring.secret


def test_a_valid_token_becomes_an_access_context(ring: KeyRing) -> None:
    revocations = Revocations()
    validator = TokenValidator(ring, revocations, {"Observation", "Patient"})
    ctx = validator.validate(_mint(ring, roles=()), audience=BASE, issuer=BASE)
    assert isinstance(ctx, AccessContext)
    assert (ctx.subject, ctx.client_id, ctx.kind, ctx.patient, ctx.fhir_user, ctx.grant_id) == (
        "u-1", "app", "patient", "p1", "Patient/p1", "g-1")
    assert ctx.scopes.search_restriction("Observation", "patient").queries == ((("category", "laboratory"),),)
    assert ctx.expires_at - ctx.issued_at == 600
    assert set(revocations.asked[-1]) == {ctx.token_id, "g-1", "client:app", "user:u-1"}


def test_revocation_is_checked_on_every_call_even_when_cached(ring: KeyRing) -> None:
    revocations = Revocations()
    validator = TokenValidator(ring, revocations)
    token = _mint(ring)
    ctx = validator.validate(token, audience=BASE, issuer=BASE)
    validator.validate(token, audience=BASE, issuer=BASE)
    revocations.ids.add(ctx.token_id)
    with pytest.raises(InvalidToken, match="revoked"):
        validator.validate(token, audience=BASE, issuer=BASE)


def test_expiry_is_checked_on_every_call_even_when_cached(ring: KeyRing) -> None:
    validator = TokenValidator(ring, Revocations())
    token = _mint(ring, lifetime_s=60)
    validator.validate(token, audience=BASE, issuer=BASE)
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(token, audience=BASE, issuer=BASE, now=time.time() + 61)


def test_a_token_from_another_key_is_refused(tmp_path: Path, ring: KeyRing) -> None:
    stranger = KeyRing(tmp_path / "other-keys.json")
    stranger.load()
    with pytest.raises(InvalidToken, match="signature"):
        TokenValidator(ring, Revocations()).validate(_mint(stranger), audience=BASE, issuer=BASE)


def test_a_token_without_kind_or_with_the_wrong_type_is_refused(ring: KeyRing) -> None:
    from joserfc import jwt

    now = int(time.time())
    claims = {"iss": BASE, "aud": BASE, "sub": "u", "client_id": "c", "iat": now, "exp": now + 60, "jti": "j"}
    untyped = jwt.encode({"alg": "RS256", "kid": ring.kid}, claims, ring.signing_key, algorithms=["RS256"])
    with pytest.raises(InvalidToken, match="at\\+jwt"):
        TokenValidator(ring, Revocations()).validate(untyped, audience=BASE, issuer=BASE)
    no_kind = jwt.encode({"alg": "RS256", "kid": ring.kid, "typ": "at+jwt"}, claims, ring.signing_key,
                         algorithms=["RS256"])
    with pytest.raises(InvalidToken, match="kind"):
        TokenValidator(ring, Revocations()).validate(no_kind, audience=BASE, issuer=BASE)


def test_rotation_by_another_process_is_picked_up(tmp_path: Path, ring: KeyRing) -> None:
    other = KeyRing(tmp_path / "auth-keys.json")
    other.load()
    old_token = _mint(ring)
    new_kid = other.rotate(retain_s=3600)
    new_token = _mint(other)
    validator = TokenValidator(ring, Revocations())
    assert validator.validate(new_token, audience=BASE, issuer=BASE).subject == "u-1"  # unknown kid: re-read
    assert validator.validate(old_token, audience=BASE, issuer=BASE).subject == "u-1"  # retired, still kept
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {new_kid, json.loads(
        (tmp_path / "auth-keys.json").read_text())["keys"][1]["jwk"]["kid"]}
    other.rotate(retain_s=0)  # drop every retired key
    with pytest.raises(InvalidToken, match="signature"):
        TokenValidator(other, Revocations()).validate(old_token, audience=BASE, issuer=BASE)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  xyz ") == "xyz"
    for bad in (None, "", "Basic abc", "Bearer", "Token abc"):
        with pytest.raises(InvalidToken):
            bearer_token(bad)

"""A hospital with two patients, staff and a lab system, for the enforcement tests: planted data (patient B's
carries marker values), real tokens from the authorization server for every role, and the audit trail.

Tokens come from the server's own flows: the authorization code flow with PKCE through the login and consent
pages (authlib's OAuth client) for users, ``client_credentials`` with a ``private_key_jwt`` assertion for the lab
system.  The expired and wrong-audience tokens are signed by the server's own key with the claims of a real
token, as a token that has aged or was issued for another server would be.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import RSAKey

from fhir_server import jsonio
from fhir_server.auth.clients import build_client
from fhir_server.auth.tokens import mint_access_token
from fhir_server.settings import AuthSettings, Settings, StorageSettings
from tests.auth.conftest import FHIR, ORIGIN, REDIRECT, TOKEN, World, add_user, login_and_fetch, oauth_client

MARK = b"MRKB"  # every marker planted in patient B's data starts with this
LAB_SCOPE = "system/Observation.cruds system/DiagnosticReport.cruds system/ServiceRequest.rs system/Patient.rs"
USER_SCOPE = "openid fhirUser user/*.cruds"
PATIENT_SCOPE = "openid fhirUser launch/patient patient/*.cruds"
APP_SCOPE = f"{USER_SCOPE} {PATIENT_SCOPE} offline_access"

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def observation(id: str, patient: str, category: str, value: str, code: str = "1234-5", **extra: Any
                ) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": CAT, "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": ref(f"Patient/{patient}"), "valueString": value, **extra}


#: planted resource → the patient it belongs to (None: no patient)
OWNER: dict[str, str | None] = {
    "Patient/pat-a": "pat-a", "Observation/obs-a-lab": "pat-a", "Condition/cond-a": "pat-a", "Invoice/inv-a": "pat-a",
    "Patient/pat-b": "pat-b", "Encounter/enc-b": "pat-b", "Observation/obs-b-lab": "pat-b",
    "Observation/obs-b-vital": "pat-b", "Observation/obs-b-focus": "pat-b", "Condition/cond-b": "pat-b",
    "Condition/cond-b-gone": "pat-b", "Invoice/inv-b": "pat-b", "Observation/obs-b-del": "pat-b",
    "Observation/obs-b-cu": "pat-b", "Observation/obs-b-cd": "pat-b",
    "Practitioner/prac-doc": None, "Practitioner/prac-nurse": None,
}


def planted() -> list[dict[str, Any]]:
    """The data, in writing order (Observation/obs-b-lab is written twice: version 1 and version 2)."""
    return [
        {"resourceType": "Practitioner", "id": "prac-doc", "name": [{"family": "House"}]},
        {"resourceType": "Practitioner", "id": "prac-nurse", "name": [{"family": "Nightingale"}]},
        {"resourceType": "Patient", "id": "pat-a", "name": [{"family": "Able", "given": ["Alice"]}]},
        {"resourceType": "Patient", "id": "pat-b", "name": [{"family": "Baker", "given": ["MRKB-NAME"]}]},
        {"resourceType": "Encounter", "id": "enc-b", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": ref("Patient/pat-b"), "participant": [{"individual": ref("Practitioner/prac-doc")}],
         "reasonCode": [{"text": "MRKB-ENC"}]},
        observation("obs-b-lab", "pat-b", "laboratory", "MRKB-LAB-V1", "2345-7",
                    identifier=[{"system": "urn:test", "value": "obs-b-ident"}]),
        observation("obs-b-lab", "pat-b", "laboratory", "MRKB-LAB-V2", "2345-7",
                    identifier=[{"system": "urn:test", "value": "obs-b-ident"}]),
        observation("obs-b-vital", "pat-b", "vital-signs", "MRKB-VITAL"),
        observation("obs-b-focus", "pat-b", "laboratory", "MRKB-FOCUS", focus=[ref("Patient/pat-a")]),
        observation("obs-b-del", "pat-b", "laboratory", "MRKB-DEL"),
        observation("obs-b-cu", "pat-b", "laboratory", "MRKB-CU",
                    identifier=[{"system": "urn:test", "value": "obs-b-cu-ident"}]),
        observation("obs-b-cd", "pat-b", "laboratory", "MRKB-CD",
                    identifier=[{"system": "urn:test", "value": "obs-b-cd-ident"}]),
        {"resourceType": "Condition", "id": "cond-b", "subject": ref("Patient/pat-b"),
         "code": {"text": "condition"}, "note": [{"text": "MRKB-COND"}]},
        {"resourceType": "Condition", "id": "cond-b-gone", "subject": ref("Patient/pat-b"),
         "code": {"text": "condition"}, "note": [{"text": "MRKB-DELETED"}]},
        {"resourceType": "Invoice", "id": "inv-b", "status": "issued", "subject": ref("Patient/pat-b"),
         "note": [{"text": "MRKB-INV"}]},
        observation("obs-a-lab", "pat-a", "laboratory", "alice-lab", "a-code",
                    hasMember=[ref("Observation/obs-b-lab")]),
        {"resourceType": "Condition", "id": "cond-a", "subject": ref("Patient/pat-a"), "code": {"text": "cond"}},
        {"resourceType": "Invoice", "id": "inv-a", "status": "issued", "subject": ref("Patient/pat-a")},
    ]


@dataclass
class Hospital:
    world: World
    tokens: dict[str, str | None] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.world.app

    def http(self, role: str) -> httpx.AsyncClient:
        token = self.tokens[role]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
                                 base_url=FHIR, headers=headers, timeout=30)

    async def audit_ids(self) -> set[str]:
        """Every AuditEvent id in the store, after the writer has written all that is queued."""
        await self.app.state.security.audit_writer.flush()
        repo = self.app.state.fhir.repo
        from fhir_server.search.model import SearchQuery
        from fhir_server.storage.base import SearchRequest

        ids: set[str] = set()
        cursor = None
        while True:
            page = await repo.search(SearchRequest(SearchQuery("AuditEvent"), 1000, cursor, total=False))
            ids.update(v.id for v in page.matches)
            cursor = page.next_cursor
            if cursor is None:
                return ids

    async def audit_events(self, ids: set[str]) -> list[dict[str, Any]]:
        repo = self.app.state.fhir.repo
        out = []
        for id in sorted(ids):
            stored = await repo.read("AuditEvent", id)
            assert stored is not None and stored.body is not None
            out.append(jsonio.loads(stored.body))
        return out


def event_summary(event: dict[str, Any]) -> tuple[str | None, str]:
    """(the patient an AuditEvent is about, its outcome)."""
    patients = [e["what"]["reference"].split("/", 1)[1] for e in event.get("entity", [])
                if (e.get("role") or {}).get("code") == "1" and "reference" in e.get("what", {})]
    assert len(patients) <= 1, event
    return (patients[0] if patients else None), event["outcome"]


class FreshPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    def sign(self, auth: Any, token_endpoint: str) -> Any:
        self.claims = {"exp": int(time.time()) + 240}
        return super().sign(auth, token_endpoint)


async def _seed(app: Any) -> None:
    resources = app.state.fhir.resources  # the server's own services: planting needs no token
    for resource in planted():
        await resources.update(resource["resourceType"], resource["id"], json.dumps(resource).encode())
    await resources.delete("Condition", "cond-b-gone")


async def _user_token(world: World, username: str, scope: str) -> str:
    async with oauth_client(world, scope=scope) as client:
        token = await login_and_fetch(world, client, username)
    return str(token["access_token"])


@asynccontextmanager
async def hospital(data_dir: Path) -> AsyncIterator[Hospital]:
    from fhir_server.app import create_app

    settings = Settings(data_dir=data_dir, storage=StorageSettings(sqlite_path=data_dir / "h.db"),
                        auth=AuthSettings(enabled=True))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        service = app.state.auth
        add_user(service, "alice", "patient", patient="pat-a")
        add_user(service, "bob", "patient", patient="pat-b")
        add_user(service, "doc", "staff", roles=["physician"], practitioner="prac-doc")
        add_user(service, "nurse", "staff", roles=["nurse"], practitioner="prac-nurse")
        add_user(service, "clerk", "staff", roles=["billing-clerk"])
        add_user(service, "root", "staff", roles=["administrator"])
        world = World(app, service, httpx.ASGITransport(app=app))
        client, _ = build_client(client_id="app", name="Test App", auth_method="none", scope=APP_SCOPE,
                                 redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"])
        service.store.add_client(client)
        key = RSAKey.generate_key(2048, {"kid": "lab-1"}, private=True)
        lab, _ = build_client(client_id="lab", name="Lab interface", auth_method="private_key_jwt",
                              scope=LAB_SCOPE, grant_types=["client_credentials"],
                              jwks={"keys": [key.as_dict(private=False)]})
        service.store.add_client(lab)
        await _seed(app)
        h = Hospital(world)
        h.tokens["A"] = await _user_token(world, "alice", PATIENT_SCOPE)
        h.tokens["B"] = await _user_token(world, "bob", PATIENT_SCOPE)
        for role, user in (("physician", "doc"), ("nurse", "nurse"), ("clerk", "clerk"), ("admin", "root")):
            h.tokens[role] = await _user_token(world, user, USER_SCOPE)
        async with AsyncOAuth2Client(client_id="lab", client_secret=key, scope=LAB_SCOPE, transport=world.transport,
                                     token_endpoint_auth_method=FreshPrivateKeyJWT(TOKEN, alg="RS384")) as c:
            h.tokens["lab"] = str((await c.fetch_token(TOKEN, grant_type="client_credentials"))["access_token"])
        h.tokens["anonymous"] = None
        alice = service.authenticate(f"Bearer {h.tokens['A']}", FHIR)
        claims = {"issuer": FHIR, "subject": alice.subject, "client_id": alice.client_id,
                  "scope": alice.scopes.text, "kind": alice.kind, "fhir_user": alice.fhir_user,
                  "patient": alice.patient, "lifetime_s": 3600}
        h.tokens["expired"], _ = mint_access_token(service.keys, audience=FHIR, now=int(time.time()) - 7200,
                                                   **claims)
        h.tokens["wrong-aud"], _ = mint_access_token(service.keys, audience=f"{ORIGIN}/other/fhir", **claims)
        yield h

"""Demo users and clients of the authorization server, created only in demo mode (``infirmary serve --demo``).

The passwords are printed by ``demo_summary`` and are for trying the system out on one machine, never for real
data.  Creating them is idempotent: a username or client id that exists is left alone.
"""

from __future__ import annotations

import contextlib

from fhir_server.auth.clients import build_client, build_user
from fhir_server.auth.store import AuthStore

#: (username, password, kind, display name, roles, patient, practitioner)
DEMO_USERS: list[tuple[str, str, str, str, tuple[str, ...], str | None, str | None]] = [
    ("alice", "alice-demo-pw", "patient", "Alice Ng", (), "pat-alice", None),
    ("bruno", "bruno-demo-pw", "patient", "Bruno Costa", (), "pat-bruno", None),
    ("house", "house-demo-pw", "staff", "Dr. Gregory House", ("physician",), None, "prac-house"),
    ("yang", "yang-demo-pw", "staff", "Dr. Cristina Yang", ("physician",), None, "prac-yang"),
    ("nightingale", "nightingale-demo-pw", "staff", "Florence Nightingale", ("nurse",), None, "prac-nightingale"),
    ("billing", "billing-demo-pw", "staff", "Billing Clerk", ("billing-clerk",), None, None),
    ("admin", "admin-demo-pw", "staff", "Administrator", ("administrator",), None, None),
]
DEMO_CLIENT_ID = "infirmary-demo-app"
DEMO_REDIRECT_URIS = ("http://localhost:8000/callback", "http://127.0.0.1:8000/callback")
DEMO_CLIENT_SCOPE = (
    "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access "
    "patient/*.cruds user/*.cruds infirmary/admin"
)


def ensure_demo_auth(store: AuthStore) -> None:
    for username, password, kind, name, roles, patient, practitioner in DEMO_USERS:
        if store.get_user_by_username(username) is not None:
            continue
        user = build_user(username=username, password=password, kind=kind, display_name=name, roles=roles,
                          patient=patient, practitioner=practitioner, user_id=f"user-{username}")
        with contextlib.suppress(ValueError):  # another worker process added it first
            store.add_user(user)
    if store.get_client(DEMO_CLIENT_ID) is None:
        client, _ = build_client(client_id=DEMO_CLIENT_ID, name="Infirmary demo app", auth_method="none",
                                 scope=DEMO_CLIENT_SCOPE, redirect_uris=DEMO_REDIRECT_URIS,
                                 grant_types=("authorization_code", "refresh_token"))
        with contextlib.suppress(ValueError):
            store.add_client(client)


def demo_summary(base_url: str) -> list[str]:
    """Lines for ``infirmary serve --demo`` to print: the demo users and the ready demo client."""
    lines = ["demo users (username / password / who):"]
    for username, password, kind, name, roles, patient, _ in DEMO_USERS:
        who = f"patient {patient}" if kind == "patient" else ", ".join(roles)
        lines.append(f"  {username:<12} {password:<20} {name} ({who})")
    lines.append(f"demo client: {DEMO_CLIENT_ID} (public, PKCE S256), redirect URIs {', '.join(DEMO_REDIRECT_URIS)}")
    lines.append(f"SMART configuration: {base_url}/fhir/.well-known/smart-configuration")
    return lines

"""``.well-known/smart-configuration`` (SMART App Launch 2.x §2.0.9) and the OpenID Connect discovery document."""

from __future__ import annotations

from typing import Any

from fhir_server.auth import scopes as sc
from fhir_server.auth._request import Endpoints
from fhir_server.auth.core import CLIENT_ASSERTION_ALGS
from fhir_server.auth.keys import SIGNING_ALG

AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
CAPABILITIES = [
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-banner", "context-ehr-patient", "context-ehr-encounter",
    "context-standalone-patient", "permission-offline", "permission-online", "permission-patient",
    "permission-user", "permission-v1", "permission-v2", "sso-openid-connect",
]
SCOPES = [
    sc.OPENID, sc.FHIR_USER, sc.PROFILE, sc.LAUNCH, sc.LAUNCH_PATIENT, sc.LAUNCH_ENCOUNTER, sc.OFFLINE_ACCESS,
    sc.ONLINE_ACCESS, "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.read", "patient/*.write",
    "user/*.read", "user/*.write", "system/*.read", "system/*.write",
]


def smart_configuration(endpoints: Endpoints, *, registration: bool) -> dict[str, Any]:
    auth = endpoints.auth_base
    out: dict[str, Any] = {
        "issuer": endpoints.issuer,
        "jwks_uri": f"{auth}/jwks",
        "authorization_endpoint": f"{auth}/authorize",
        "token_endpoint": endpoints.token_url,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "grant_types_supported": GRANT_TYPES,
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": f"{auth}/introspect",
        "revocation_endpoint": f"{auth}/revoke",
    }
    if registration:
        out["registration_endpoint"] = f"{auth}/register"
    return out


def openid_configuration(endpoints: Endpoints, *, registration: bool) -> dict[str, Any]:
    smart = smart_configuration(endpoints, registration=registration)
    keep = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "token_endpoint_auth_methods_supported",
            "grant_types_supported", "scopes_supported", "response_types_supported",
            "code_challenge_methods_supported", "introspection_endpoint", "revocation_endpoint",
            "registration_endpoint")
    out = {k: smart[k] for k in keep if k in smart}
    out.update({
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name"],
    })
    return out

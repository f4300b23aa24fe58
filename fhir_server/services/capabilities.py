"""The CapabilityStatement, generated from what this server really supports."""

from __future__ import annotations

from typing import Any

from fhir_server import __version__
from fhir_server.definitions import Definitions
from fhir_server.search.registry import SearchRegistry

TYPE_INTERACTIONS = (
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system", "search-system")
# operations: (name, canonical definition, resource type or None for the system level)
OPERATIONS = (
    ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", None),
    ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export", "Patient"),
    ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export", "Group"),
    ("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything", "Patient"),
    *((name, f"https://infirmary.example.org/fhir/OperationDefinition/Appointment-{name}", "Appointment")
      for name in ("find", "hold", "book", "reschedule", "cancel")),  # docs/scheduling.md
)
_STORE_PARAMS = (
    ("_id", "http://hl7.org/fhir/SearchParameter/Resource-id", "token"),
    ("_lastUpdated", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", "date"),
)
FORMATS = ("json", "application/fhir+json", "application/json")
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json")


def _search_params(registry: SearchRegistry, rtype: str) -> list[dict[str, Any]]:
    params = {code: (code, p.url, p.type) for code, p in registry.params(rtype).items()}
    for code, url, ptype in _STORE_PARAMS:
        params[code] = (code, url, ptype)
    return [{"name": name, "definition": url, "type": ptype} for name, url, ptype in sorted(params.values())]


def _includes(registry: SearchRegistry, rtype: str) -> list[str]:
    return ["*", *sorted(f"{rtype}:{p.code}" for p in registry.reference_params(rtype))]


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_security(authorize: str, token: str, introspect: str, revoke: str,
                   register: str | None = None) -> dict[str, Any]:
    """``rest.security`` of a server that takes SMART on FHIR access tokens (SMART App Launch 2.x)."""
    uris = [("authorize", authorize), ("token", token), ("introspect", introspect), ("revoke", revoke)]
    if register:
        uris.append(("register", register))
    return {
        "cors": True,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see .well-known/smart-configuration)"}],
        "extension": [{"url": OAUTH_URIS,
                       "extension": [{"url": name, "valueUri": uri} for name, uri in uris]}],
        "description": "Every interaction needs an access token from this server's SMART authorization server; "
                       "SMART v1 and v2 scopes, staff role policies and the patient compartment limit what it "
                       "reaches, and every access to patient data is audited.",
    }


def capability_statement(
    defs: Definitions, registry: SearchRegistry, base_url: str, started: str,
    security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    resources: list[dict[str, Any]] = [
        {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": _includes(registry, rtype),
            "searchParam": _search_params(registry, rtype),
        }
        for rtype in sorted(defs.resource_types)
    ]
    for resource in resources:
        ops = [{"name": name, "definition": url} for name, url, on in OPERATIONS if on == resource["type"]]
        if ops:
            resource["operation"] = ops
    rest: dict[str, Any] = {"mode": "server"}
    if security is not None:
        rest["security"] = security
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started,
        "publisher": "Infirmary",
        "kind": "instance",
        "software": {"name": "Infirmary", "version": __version__},
        "implementation": {"description": "Infirmary FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                **rest,
                "documentation": (
                    "FHIR R4 RESTful API. Conditional create, update, delete and patch accept any search "
                    "criteria. Search supports every parameter type, modifier and prefix, chaining, _has, "
                    "_include/_revinclude (:iterate), _sort, _total, _summary, _elements and keyset paging. batch and "
                    "transaction Bundles are atomic (transaction) with urn:uuid and conditional references; "
                    "Bulk Data export and Patient/$everything are available."
                ),
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "operation": [{"name": name, "definition": url} for name, url, on in OPERATIONS if on is None],
            }
        ],
    }
    return statement

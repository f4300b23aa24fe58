"""The CapabilityStatement, generated from what this server really supports."""

from __future__ import annotations

from typing import Any

from fhir_server import __version__
from fhir_server.definitions import Definitions
from fhir_server.search.registry import SearchRegistry

TYPE_INTERACTIONS = (
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type",
)
SYSTEM_INTERACTIONS = ("history-system", "search-system")
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


def capability_statement(
    defs: Definitions, registry: SearchRegistry, base_url: str, started: str
) -> dict[str, Any]:
    resources = [
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
    return {
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
                "mode": "server",
                "documentation": (
                    "FHIR R4 RESTful API. Conditional create, update, delete and patch accept any search "
                    "criteria. Search supports every parameter type, modifier and prefix, chaining, _has, "
                    "_include/_revinclude (:iterate), _sort, _total, _summary, _elements and keyset paging."
                ),
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }

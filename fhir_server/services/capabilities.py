"""The CapabilityStatement, generated from what this server really supports."""

from __future__ import annotations

from typing import Any

from fhir_server import __version__
from fhir_server.definitions import Definitions

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create")
SYSTEM_INTERACTIONS = ("history-system",)
FORMATS = ("json", "application/fhir+json", "application/json")
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json")


def capability_statement(defs: Definitions, base_url: str, started: str) -> dict[str, Any]:
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
                    "FHIR R4 RESTful API. Conditional create, update, delete and patch accept _id and "
                    "identifier criteria."
                ),
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }

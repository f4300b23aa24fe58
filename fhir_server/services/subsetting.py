"""``_summary`` and ``_elements``: return a subset of a resource, tagged SUBSETTED (R4 search.html#summary)."""

from __future__ import annotations

from typing import Any

from fhir_server.definitions import Definitions
from fhir_server.errors import InvalidRequest

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
_ALWAYS = ("resourceType", "id", "meta")


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" and t.get("system") == SUBSETTED["system"] for t in tags):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def _keep(resource: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    out = {}
    for key, value in resource.items():
        base = key[1:] if key.startswith("_") else key
        if key in _ALWAYS or base in wanted:
            out[key] = value
    return _tagged(out)


def summary(resource: dict[str, Any], mode: str, defs: Definitions) -> dict[str, Any]:
    """Apply ``_summary``: ``true`` keeps summary elements, ``text`` text plus mandatory elements, ``data``
    drops the narrative, ``false`` returns everything."""
    if mode not in SUMMARY_MODES:
        raise InvalidRequest(f"_summary must be one of {', '.join(SUMMARY_MODES)}", expression="_summary")
    rtype = resource.get("resourceType", "")
    if mode == "false" or mode == "count":
        return resource
    if mode == "true":
        return _keep(resource, set(defs.summary_elements(rtype)))
    if mode == "text":
        return _keep(resource, {"text", *defs.mandatory_elements(rtype)})
    return _tagged({k: v for k, v in resource.items() if k not in ("text", "_text")})


def elements(resource: dict[str, Any], names: str, defs: Definitions) -> dict[str, Any]:
    """Apply ``_elements=a,b``: keep the named top-level elements (and ``id``/``meta``).

    A choice element may be named by its base name (``value`` keeps ``valueQuantity``)."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    if not wanted:
        return resource
    for key in list(resource):
        for name in list(wanted):
            if key.startswith(name) and key[len(name) :][:1].isupper():
                wanted.add(key)
    return _keep(resource, wanted)

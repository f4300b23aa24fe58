"""The server-side step of a patient merge (ADT^A40): what the pure mapping cannot know.

``adt_a40.to_bundle`` writes the surviving patient (``link`` replaces) and patches the old one (``active`` false,
``link`` replaced-by).  Before that Bundle is run, :func:`complete` looks the old patient up and

* when it exists, adds to the same Bundle one ``PUT [type]/[id]`` per resource of its Patient compartment (other
  than Patient resources) with every reference to it pointed at the survivor, each guarded by ``ifMatch`` on the
  version read — so the merge and the moved references commit together or not at all, and a resource changed in
  between makes the transaction fail (the sender is answered AE and may send the merge again);
* when it does not exist (the merged-away record was never sent here), replaces the patch by the creation of an
  inactive placeholder that carries the old identifier and the ``replaced-by`` link, so later messages quoting the
  old identifier find the merge.

For every other message it does nothing.  Resources created by another writer after the look-up and before the
commit still refer to the old patient; ``link`` replaced-by tells readers where to go.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server import jsonio
from fhir_server.api.context import Services
from hl7_adapters.mappings._bundle import Builder
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._patient import matching_identifier
from hl7_adapters.mappings.adt_a40 import PRIOR_FIELDS
from hl7_adapters.v2.message import Message

_PAGE = 500


async def complete(msg: Message, bundle: dict[str, Any], services: Services, base_url: str) -> None:
    """Add the reference moves of an ADT^A40 merge to its Bundle (see the module docstring); no-op otherwise."""
    if (msg.message_type.upper(), msg.trigger_event.upper()) != ("ADT", "A40"):
        return
    entries: list[dict[str, Any]] = bundle["entry"]
    old = next(e for e in entries if e["request"]["method"] == "PATCH")
    survivor = next(e for e in entries if e["request"]["method"] == "PUT" and e["resource"].get("link"))
    query = old["request"]["url"].split("?", 1)[1]
    found = await services.resources.repo.find(services.resources.criteria("Patient", query), limit=2)
    mrg = msg.first("MRG")
    if len(found) > 1:
        raise MappingError("MRG", mrg.index if mrg else -1, 1, f"the prior patient identifier matches "
                           f"{len(found)} patients; merge them one at a time", 1)
    if not found:
        assert mrg is not None
        identifier = matching_identifier(mrg, Builder(msg).sender_system, PRIOR_FIELDS)
        old["resource"] = {"resourceType": "Patient", "identifier": [identifier], "active": False,
                           "link": [{"other": {"reference": survivor["fullUrl"]}, "type": "replaced-by"}]}
        old["request"] = {"method": "POST", "url": "Patient", "ifNoneExist": query}
        return
    entries.extend(await _moves(found[0], survivor["fullUrl"], services, base_url))


async def _moves(old_id: str, survivor_url: str, services: Services, base_url: str) -> list[dict[str, Any]]:
    target = f"Patient/{old_id}"
    moves: list[dict[str, Any]] = []
    for rtype in sorted(services.search.defs.compartments["Patient"]):
        if rtype == "Patient":
            continue
        async for resource in _compartment(rtype, old_id, services, base_url):
            if _repoint(resource, target, survivor_url):
                moves.append({
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"{rtype}/{resource['id']}",
                                "ifMatch": f'W/"{resource["meta"]["versionId"]}"'},
                })
    return moves


async def _compartment(rtype: str, old_id: str, services: Services, base_url: str) -> Any:
    params: list[tuple[str, str]] = [("_count", str(_PAGE))]
    while True:
        page = jsonio.loads(await services.search.search(rtype, params, base_url=base_url,
                                                         compartment=("Patient", old_id)))
        for entry in page.get("entry", []):
            if entry.get("search", {}).get("mode", "match") == "match":
                yield entry["resource"]
        following = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
        if following is None:
            return
        params = [(k, v) for k, v in parse_qsl(urlsplit(following).query) if k in ("_count", "_cursor")]


def _repoint(node: Any, target: str, replacement: str) -> bool:
    """Point every reference to ``target`` (relative, absolute or versioned) at ``replacement``."""
    changed = False
    if isinstance(node, list):
        for item in node:
            changed = _repoint(item, target, replacement) or changed
        return changed
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key == "reference" and isinstance(value, str) and _points_at(value, target):
            node[key] = replacement
            changed = True
        elif isinstance(value, dict | list):
            changed = _repoint(value, target, replacement) or changed
    return changed


def _points_at(reference: str, target: str) -> bool:
    path = reference.split("/_history/", 1)[0]
    return path == target or path.endswith("/" + target)

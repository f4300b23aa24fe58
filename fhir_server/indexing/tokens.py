"""Token index entries extracted at write time.

This is the first slice of indexing: the ``identifier`` search parameter of every resource type (what conditional
create/update/delete rely on).  Its R4 expressions are plain paths (``Patient.identifier``), so they are
evaluated by direct navigation, compiled once per resource type.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fhir_server.storage.base import IndexEntries, TokenEntry

Path = tuple[str, ...]


def _plain_paths(expression: str, resource_type: str) -> list[Path]:
    """The dotted member paths of an expression's alternatives that apply to the resource type."""
    paths: list[Path] = []
    for alternative in expression.split("|"):
        parts = alternative.strip().split(".")
        if parts[0] != resource_type or len(parts) < 2:
            continue
        if all(p.isidentifier() for p in parts[1:]):
            paths.append(tuple(parts[1:]))
    return paths


def _walk(node: Any, path: Path) -> Iterator[Any]:
    if not path:
        yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
        return
    if isinstance(node, dict):
        child = node.get(path[0])
        if child is not None:
            yield from _walk(child, path[1:])


def _identifier_tokens(param: str, value: Any) -> Iterator[TokenEntry]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            system = item.get("system")
            yield TokenEntry(param, system if isinstance(system, str) else None, item["value"])


class TokenIndexer:
    """Extracts the token entries the store keeps for conditional interactions."""

    PARAMS = ("identifier",)

    def __init__(self, search_parameters: Iterable[dict[str, Any]], resource_types: Iterable[str]) -> None:
        self._paths: dict[str, dict[str, list[Path]]] = {rt: {} for rt in resource_types}
        for sp in search_parameters:
            code = sp.get("code")
            if code not in self.PARAMS or not sp.get("expression"):
                continue
            for base in sp.get("base", []):
                if base in self._paths:
                    paths = _plain_paths(sp["expression"], base)
                    if paths:
                        self._paths[base][code] = paths

    def supports(self, resource_type: str, param: str) -> bool:
        return param in self._paths.get(resource_type, {})

    def extract(self, resource: dict[str, Any]) -> IndexEntries:
        entries = IndexEntries()
        for param, paths in self._paths.get(resource.get("resourceType", ""), {}).items():
            seen: set[TokenEntry] = set()
            for path in paths:
                for value in _walk(resource, path):
                    for token in _identifier_tokens(param, value):
                        if token not in seen:
                            seen.add(token)
                            entries.tokens.append(token)
        return entries

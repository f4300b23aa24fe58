"""What the query parser needs to know about search parameters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class ParamDef(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def targets(self) -> tuple[str, ...]: ...
    @property
    def components(self) -> tuple[tuple[str, str], ...]: ...  # (definition url, expression)


class Registry(Protocol):
    def lookup(self, resource_type: str, code: str) -> ParamDef | None:
        """The parameter ``code`` on ``resource_type`` (including Resource/DomainResource parameters)."""

    def by_url(self, url: str) -> ParamDef | None: ...

    def is_resource_type(self, name: str) -> bool: ...

    def reference_params(self, resource_type: str) -> Sequence[ParamDef]: ...


class ParamSource(Protocol):
    """Where the registry reads parameters from (the indexer, which also knows run-time custom ones)."""

    def params_for(self, resource_type: str) -> Mapping[str, ParamDef]: ...


class SearchRegistry:
    """The search parameters in force, per resource type, as the query parser and search service see them."""

    def __init__(self, source: ParamSource, resource_types: Iterable[str]) -> None:
        self._source = source
        self._types = frozenset(resource_types)
        self._urls: dict[str, ParamDef] = {}

    def lookup(self, resource_type: str, code: str) -> ParamDef | None:
        return self._source.params_for(resource_type).get(code)

    def by_url(self, url: str) -> ParamDef | None:
        found = self._urls.get(url)
        if found is None:
            for rtype in sorted(self._types):
                for param in self._source.params_for(rtype).values():
                    self._urls.setdefault(param.url, param)
            found = self._urls.get(url)
        return found

    def is_resource_type(self, name: str) -> bool:
        return name in self._types

    def reference_params(self, resource_type: str) -> Sequence[ParamDef]:
        return [p for p in self._source.params_for(resource_type).values() if p.type == "reference"]

    def params(self, resource_type: str) -> Mapping[str, ParamDef]:
        return self._source.params_for(resource_type)

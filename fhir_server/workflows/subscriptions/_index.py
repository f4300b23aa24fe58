"""The active Subscriptions of this process, by the resource type their criteria select (kept in memory: every
committed write asks it which Subscriptions to evaluate)."""

from __future__ import annotations

from fhir_server.workflows.subscriptions.definition import Definition


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, Definition]] = {}
        self._type_of: dict[str, str] = {}

    def put(self, definition: Definition) -> None:
        """Add or replace a Subscription (an older version than the one held changes nothing)."""
        held = self.get(definition.id)
        if held is not None and held.version > definition.version:
            return
        self.remove(definition.id)
        self._by_type.setdefault(definition.resource_type, {})[definition.id] = definition
        self._type_of[definition.id] = definition.resource_type

    def remove(self, sub_id: str) -> None:
        resource_type = self._type_of.pop(sub_id, None)
        if resource_type is not None:
            self._by_type.get(resource_type, {}).pop(sub_id, None)

    def get(self, sub_id: str) -> Definition | None:
        resource_type = self._type_of.get(sub_id)
        return None if resource_type is None else self._by_type[resource_type].get(sub_id)

    def has_type(self, resource_type: str) -> bool:
        return bool(self._by_type.get(resource_type))

    def for_type(self, resource_type: str) -> list[Definition]:
        return list(self._by_type.get(resource_type, {}).values())

    def __len__(self) -> int:
        return len(self._type_of)

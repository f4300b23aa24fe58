"""Static FHIR types for compiled paths: what each step of a search expression selects, known at compile time.

A :class:`Ctx` describes the values a compiled path produces: their FHIR type code and, for complex types and
backbone elements, the element node whose children the next step can navigate.  Choice elements
(``Observation.value[x]``) fan out at compile time into one :class:`Ctx` per allowed type, each with its JSON
property name (``valueQuantity``), so the runtime only does dictionary look-ups.

Type tests (``is``, ``as``, ``ofType``) are decided statically from these types, following the type hierarchy
of the definitions (``Age`` is a ``Quantity``, ``code`` is a ``string``, ``Patient`` is a ``DomainResource``).
The one dynamic type is ``Resource`` (``Bundle.entry.resource``, ``contained``): its concrete type is read from
``resourceType`` at run time.

R4 errata handled here: R4 expressions such as ``value.as(DateTime)`` name FHIRPath *System* types where the
FHIR primitive is meant; an unqualified (or ``System.``-qualified) ``Boolean``, ``String``, ``Integer``,
``Decimal``, ``Date``, ``DateTime`` or ``Time`` that is not itself a FHIR type is read as the FHIR primitive
(``dateTime``).
"""

from __future__ import annotations

from collections.abc import Mapping

from fhir_server.definitions import Definitions, ElementRule, Node, ValueSet

__all__ = ["RESOURCE", "Ctx", "TypeSystem"]

RESOURCE = "Resource"  # the type code of an element holding any resource (its type is read at run time)
_SYSTEM_TYPES = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}


class Ctx:
    """The static type of the values a compiled path selects."""

    __slots__ = ("code_systems", "element", "node", "type")

    def __init__(
        self,
        type_code: str,
        node: Node | None,
        element: str = "",
        code_systems: Mapping[str, str] | None = None,
    ) -> None:
        self.type = type_code  # FHIR type code: "HumanName", "code", "BackboneElement", "Patient", "Resource"
        self.node = node  # the children, for complex types and backbone elements
        self.element = element  # the defining element path ("Observation.value[x]"), or the type name
        self.code_systems = code_systems  # code -> system, for codes bound to a one-system-per-code value set

    def __repr__(self) -> str:
        return f"Ctx({self.type}, {self.element})"


class TypeSystem:
    """Types, members and subtype tests over the R4 definitions, with the look-ups cached."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self._type_ctx: dict[str, Ctx] = {}
        self._rule_ctx: dict[int, Ctx] = {}
        self._members: dict[int, dict[str, tuple[ElementRule, ...]]] = {}
        self._systems: dict[str, Mapping[str, str]] = {}

    # ------------------------------------------------------------------------------------------- contexts
    def of_type(self, name: str) -> Ctx:
        """The context of a whole value of a named type (a resource root, a data type, a primitive)."""
        ctx = self._type_ctx.get(name)
        if ctx is None:
            definition = self.defs.types.get(name)
            node = definition.node if definition is not None and definition.kind != "primitive-type" else None
            if name == RESOURCE:
                node = None
            ctx = self._type_ctx[name] = Ctx(name, node, name)
        return ctx

    def of_rule(self, rule: ElementRule) -> Ctx:
        """The context of the values of one JSON property."""
        ctx = self._rule_ctx.get(id(rule))
        if ctx is None:
            systems = None
            if rule.type_code == "code" and rule.valueset is not None:
                systems = self._code_systems(rule.valueset)
            node = None if rule.is_primitive or rule.type_code == RESOURCE else rule.node
            if node is None and not rule.is_primitive and rule.type_code != RESOURCE:
                node = self.of_type(rule.type_code).node
            ctx = self._rule_ctx[id(rule)] = Ctx(rule.type_code, node, rule.path, systems)
        return ctx

    def members(self, ctx: Ctx, name: str) -> list[tuple[str, Ctx]]:
        """The JSON properties (with their contexts) that FHIRPath member ``name`` selects on ``ctx``: one for a
        plain element, one per type for a choice element (``value`` → ``valueQuantity``, ...), none if the
        element does not exist."""
        if ctx.node is None:
            return []
        index = self._members.get(id(ctx.node))
        if index is None:
            index = self._members[id(ctx.node)] = _member_index(ctx.node)
        return [(rule.name, self.of_rule(rule)) for rule in index.get(name, ())]

    def has_member(self, ctx: Ctx, name: str) -> bool:
        return bool(self.members(ctx, name))

    # ---------------------------------------------------------------------------------------------- types
    def type_name(self, name: str, namespace: str | None = None) -> str:
        """Resolve a FHIRPath type specifier to a FHIR type code (see the module docstring for System types)."""
        if namespace == "FHIR" or (namespace is None and name in self.defs.types):
            return name
        return _SYSTEM_TYPES.get(name, name)

    def is_type_name(self, name: str) -> bool:
        return name in self.defs.types

    def is_resource_type(self, name: str) -> bool:
        definition = self.defs.types.get(name)
        return definition is not None and definition.kind == "resource"

    def is_subtype(self, actual: str, wanted: str) -> bool:
        """True when a value of type ``actual`` is a ``wanted`` (the type itself or a specialisation of it)."""
        seen = 0
        current: str | None = actual
        while current is not None and seen < 32:
            if current == wanted:
                return True
            definition = self.defs.types.get(current)
            current = definition.base if definition is not None else None
            seen += 1
        return False

    def _code_systems(self, valueset: ValueSet) -> Mapping[str, str]:
        found = self._systems.get(valueset.url)
        if found is None:
            owners: dict[str, list[str]] = {}
            for system, codes in valueset.systems.items():
                for code in codes:
                    owners.setdefault(code, []).append(system)
            found = {code: systems[0] for code, systems in owners.items() if len(systems) == 1}
            self._systems[valueset.url] = found
        return found


def _member_index(node: Node) -> dict[str, tuple[ElementRule, ...]]:
    index: dict[str, list[ElementRule]] = {}
    for rule in node.elements.values():
        index.setdefault(rule.choice_of or rule.name, []).append(rule)
        if rule.choice_of:  # the JSON name of one choice type, for expressions written with it
            index.setdefault(rule.name, []).append(rule)
    return {name: tuple(rules) for name, rules in index.items()}

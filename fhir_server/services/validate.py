"""Structural validation of an R4 resource in JSON form, driven by the generated definitions.

``Validator(load_definitions()).validate(resource)`` returns every problem found (an empty list when valid), each
an ``Issue("error", code, diagnostics, (expression,))``.  The expression names the element as FHIRPath would:
``Patient.name[0].given[1]``, ``Observation.valueQuantity.value``; a resource nested in another resource is
entered with ``ofType``: ``Bundle.entry[3].resource.ofType(Patient).birthDate``.  A primitive's ``_name``
companion is addressed as the primitive itself (``Patient.birthDate.extension[0].url``).  Problems with the
resource as a whole use the resource type (``Patient``), or ``Resource`` when the type itself is unknown.

Issue codes (FHIR IssueType), and what each covers:

- ``structure``: not a JSON object; missing or unknown ``resourceType``; an unknown element (``fhir_comments``
  included: R4 JSON has no comment property and none of the official examples uses one; ``_name`` for element
  ids and ``Extension.url``, which cannot carry extensions); a wrong JSON type; an array where one value belongs
  or the reverse; ``null``, ``[]``, ``{}`` or ``""``; a primitive not matching its R4 lexical form (regex); a
  second ``value[x]`` variant (the one max-cardinality breach JSON can express); a ``_name`` array not aligned
  with its ``name`` array; a narrative that is not an XHTML ``<div>``; nesting too deep to walk.
- ``required``: an element with min >= 1 is absent (a primitive present only as ``_name`` with an extension
  counts as present); a contained resource without ``id``.
- ``value``: a well-formed value that is not allowed: a day that does not exist (``2020-02-30``), an integer
  outside its range, a string over its maximum length, a reference that is not a literal reference, names an
  unknown resource type, or a type the element may not point to.
- ``code-invalid``: a code outside a required binding's value set.
- ``invariant``: ``ext-1`` (an extension has a value or nested extensions, never both, never neither),
  ``ele-1`` (an element has a value or children besides ``id``), ``ref-1`` (a ``#id`` reference names a contained
  resource), ``dom-2`` (no nested ``contained``), ``dom-3`` (every contained resource is referenced from the
  resource, or refers to it with ``#``), ``dom-4`` (no ``meta.versionId``/``meta.lastUpdated`` in a contained
  resource), ``dom-5`` (no ``meta.security`` in a contained resource).

With :func:`fhir_server.errors.issues_error`, ``structure`` answers 400 and the others 422.

Required bindings are checked for ``code`` (the value must be one of the value set's codes; the system is
implied), ``Coding`` (system and code must be in it) and ``CodeableConcept``: at least one coding must be in the
value set.  A CodeableConcept with only ``text`` does not satisfy a required binding: the R4 definition of
*required* ("the concept in this element SHALL be from the specified value set") has no text escape, unlike
*extensible* ("data type allowing, text").  Value sets that cannot be expanded from the core package (mime
types, currencies, UCUM units, a LOINC answer list) accept any code.

A relative reference ``Type/id`` (or ``Type?query`` in a transaction) must name a known resource type, and one
the element allows when its targets do not include ``Resource``.  Absolute URLs, ``urn:uuid:`` and ``urn:oid:``
references are not checked.  Invariants other than those listed above (FHIRPath constraints) and profiles such as
SimpleQuantity are not evaluated here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeAlias

from fhir_server.definitions import Definitions, ElementRule, Node, ValueSet
from fhir_server.errors import Issue
from fhir_server.services._primitives import Problem, build_checks

__all__ = ["Validator"]

_RELATIVE_REFERENCE = re.compile(
    r"([A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII
).fullmatch
# primitives whose '#id' values count as references to contained resources (dom-3)
_HASH_TYPES = frozenset({"uri", "url", "canonical"})
_EMPTY: frozenset[str] = frozenset()

# Where an element is, built without formatting on the hot path: the resource's expression, or
# (parent, JSON name, array index or -1).  It is turned into text only when an issue is reported.
Location: TypeAlias = "str | tuple[Location, str, int]"


def _render(location: Location) -> str:
    parts: list[str] = []
    while not isinstance(location, str):
        location, key, index = location
        parts.append(key if index < 0 else f"{key}[{index}]")
    parts.append(location)
    parts.reverse()
    return ".".join(parts)


class _Context:
    """What one resource (with its contained resources) collects while it is walked."""

    __slots__ = ("contained", "hash_refs", "issues", "local_refs")

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        self.hash_refs: set[str] | None = None  # every '#...' reference, canonical, uri or url value
        self.local_refs: list[tuple[str, Location]] | None = None  # (Reference.reference '#id', where)
        self.contained: list[tuple[object, Location, bool]] | None = None  # (id, where, refers to container)

    def error(self, code: str, diagnostics: str, location: Location) -> None:
        self.issues.append(Issue("error", code, diagnostics, (_render(location),)))

    def add_hash(self, value: str) -> None:
        if self.hash_refs is None:
            self.hash_refs = set()
        self.hash_refs.add(value)

    def merge(self, other: _Context) -> None:
        for value in other.hash_refs or ():
            self.add_hash(value)
        if other.local_refs:
            self.local_refs = (self.local_refs or []) + other.local_refs


ComplexCheck = Callable[[dict[str, Any], ElementRule, Location, _Context], None]


class Validator:
    """Validates resources against the base R4 structure definitions."""

    def __init__(self, defs: Definitions) -> None:
        self._defs = defs
        self._checks = build_checks(defs)
        self._roots: dict[str, Node] = {name: defs.type(name).node for name in defs.resource_types}
        self._element_node = defs.type("Element").node  # what a primitive's "_name" object may hold
        self._complex_checks: dict[str, ComplexCheck] = {
            "Extension": self._extension,
            "Reference": self._reference,
            "CodeableConcept": self._codeable_concept,
            "Coding": self._coding,
        }

    def validate(self, resource: object) -> list[Issue]:
        """Every problem found in ``resource`` (parsed JSON); an empty list when it is valid."""
        issues: list[Issue] = []
        try:
            self._resource(resource, None, issues, None)
        except RecursionError:
            issues.append(Issue("error", "structure", "the resource is nested too deeply", ("Resource",)))
        return issues

    # ------------------------------------------------------------------------------------------ resources
    def _resource(
        self, value: object, where: Location | None, issues: list[Issue], container: _Context | None
    ) -> _Context | None:
        """Validate a resource found at ``where`` (None at the root); a contained one reports to its container."""
        ctx = _Context(issues)
        if type(value) is not dict:
            ctx.error("structure", "a resource must be a JSON object", where or "Resource")
            return None
        rtype = value.get("resourceType")
        node = self._roots.get(rtype) if type(rtype) is str else None
        if node is None:
            problem = "resourceType is missing" if rtype is None else f"unknown resource type {rtype!r}"
            ctx.error("structure", problem, where or "Resource")
            return None
        location: Location = (where, f"ofType({rtype})", -1) if where is not None else str(rtype)
        self._object(value, node, location, ctx, resource=True)
        if container is None and (ctx.contained or ctx.local_refs):
            self._local_references(ctx)
        return ctx

    def _contained(self, value: dict[str, Any], where: Location, ctx: _Context) -> None:
        sub = self._resource(value, where, ctx.issues, ctx)
        if sub is None:
            return
        location: Location = (where, f"ofType({value['resourceType']})", -1)
        if "contained" in value:
            ctx.error(
                "invariant",
                "dom-2: a contained resource cannot contain resources",
                (location, "contained", -1),
            )
        meta = value.get("meta")
        if type(meta) is dict:
            if "versionId" in meta or "lastUpdated" in meta:
                ctx.error(
                    "invariant",
                    "dom-4: a contained resource cannot have meta.versionId or meta.lastUpdated",
                    (location, "meta", -1),
                )
            if "security" in meta:
                ctx.error(
                    "invariant",
                    "dom-5: a contained resource cannot have security labels",
                    ((location, "meta", -1), "security", -1),
                )
        resource_id = value.get("id")
        if resource_id is None:
            ctx.error("required", "a contained resource must have an id", (location, "id", -1))
        refers_to_container = "#" in (sub.hash_refs or ())
        ctx.merge(sub)
        if ctx.contained is None:
            ctx.contained = []
        ctx.contained.append((resource_id, where, refers_to_container))

    def _local_references(self, ctx: _Context) -> None:
        """dom-3 and ref-1, once the whole resource (contained resources included) has been walked."""
        contained = ctx.contained or []
        refs = ctx.hash_refs or set()
        for resource_id, where, refers_to_container in contained:
            if type(resource_id) is str and "#" + resource_id not in refs and not refers_to_container:
                ctx.error(
                    "invariant",
                    f"dom-3: the contained resource {resource_id!r} is not referenced from the "
                    "rest of the resource",
                    where,
                )
        ids = {resource_id for resource_id, _, _ in contained if type(resource_id) is str}
        for ref, where in ctx.local_refs or ():
            if ref != "#" and ref[1:] not in ids:
                ctx.error("invariant", f"ref-1: {ref!r} does not name a contained resource", where)

    # ------------------------------------------------------------------------------------------- elements
    def _object(
        self, obj: dict[str, Any], node: Node, location: Location, ctx: _Context, resource: bool = False
    ) -> None:
        elements = node.elements
        chosen: dict[str, str] | None = None
        for key, value in obj.items():
            rule = elements.get(key)
            if rule is None:
                if key[:1] == "_":
                    rule = elements.get(key[1:])
                    if rule is not None and rule.is_primitive and not rule.is_system:
                        if rule.choice_of is not None:
                            chosen = _choose(chosen, rule, location, ctx)
                        self._companion(obj, key, value, rule, location, ctx)
                        continue
                elif key == "resourceType" and resource:
                    continue
                ctx.error("structure", f"unknown element {key!r}", (location, key, -1))
                continue
            if rule.choice_of is not None:
                chosen = _choose(chosen, rule, location, ctx)
            if rule.is_array:
                if type(value) is list and value:
                    self._array(obj, key, value, rule, location, ctx)
                else:
                    problem = "must not be an empty array" if type(value) is list else "must be a JSON array"
                    ctx.error("structure", f"{key!r} {problem}", (location, key, -1))
            elif rule.is_primitive:
                self._primitive(value, rule, location, key, -1, ctx)
            elif type(value) is dict:
                self._complex(value, rule, (location, key, -1), ctx)
            else:
                ctx.error("structure", _not_an_object(key, rule, value), (location, key, -1))
        for mandatory in node.mandatory:
            for key in mandatory.keys:
                if key in obj:
                    break
            else:
                ctx.error(
                    "required", f"missing required element {mandatory.name!r}", (location, mandatory.name, -1)
                )

    def _array(
        self,
        obj: dict[str, Any],
        key: str,
        value: list[Any],
        rule: ElementRule,
        location: Location,
        ctx: _Context,
    ) -> None:
        if rule.max is not None and len(value) > rule.max:
            ctx.error("structure", f"{key!r} allows at most {rule.max} values", (location, key, -1))
        if rule.is_primitive:
            companion = obj.get("_" + key)
            for index, item in enumerate(value):
                if item is not None:
                    self._primitive(item, rule, location, key, index, ctx)
                elif type(companion) is not list or index >= len(companion) or companion[index] is None:
                    ctx.error("structure", f"{key!r} must not contain null", (location, key, index))
            return
        for index, item in enumerate(value):
            if type(item) is dict:
                self._complex(item, rule, (location, key, index), ctx)
            else:
                ctx.error("structure", _not_an_object(key, rule, item), (location, key, index))

    def _primitive(
        self, value: Any, rule: ElementRule, location: Location, key: str, index: int, ctx: _Context
    ) -> None:
        problem: Problem | None = self._checks[rule.type_code](value)
        if problem is not None:
            if value is None:
                problem = "structure", f"{key!r} must not be null"
            elif type(value) is list:
                problem = "structure", f"{key!r} has at most one value and must not be an array"
            ctx.error(problem[0], problem[1], (location, key, index))
            return
        valueset = rule.valueset
        if valueset is not None:
            if valueset.checkable and rule.type_code == "code" and value not in valueset.codes:
                ctx.error(
                    "code-invalid",
                    f"{value!r} is not in the required value set {valueset.url}",
                    (location, key, index),
                )
        elif rule.type_code in _HASH_TYPES and value[:1] == "#":
            ctx.add_hash(value)

    def _complex(self, value: dict[str, Any], rule: ElementRule, location: Location, ctx: _Context) -> None:
        node = rule.node
        if node is None:
            if rule.type_code == "Resource":
                if rule.name == "contained":
                    self._contained(value, location, ctx)
                else:
                    self._resource(value, location, ctx.issues, None)
            return
        if not value:
            ctx.error("structure", "an element must not be an empty object", location)
            return
        self._object(value, node, location, ctx)
        if len(value) == 1 and "id" in value:
            ctx.error("invariant", "ele-1: an element must have a value or children besides id", location)
        check = self._complex_checks.get(rule.type_code)
        if check is not None:
            check(value, rule, location, ctx)

    def _companion(
        self, obj: dict[str, Any], key: str, value: Any, rule: ElementRule, location: Location, ctx: _Context
    ) -> None:
        """A primitive's "_name" property: its id and extensions (an array aligned with the values)."""
        name = key[1:]
        primary = obj.get(name)
        if not rule.is_array:
            if type(value) is list:
                ctx.error("structure", f"{key!r} must not be an array", (location, name, -1))
            else:
                self._element(value, key, (location, name, -1), ctx, primary is not None)
            return
        if type(value) is not list or not value:
            ctx.error("structure", f"{key!r} must be a non-empty JSON array", (location, name, -1))
            return
        values = primary if type(primary) is list else []
        if primary is not None and len(values) != len(value):
            ctx.error(
                "structure",
                f"{key!r} has {len(value)} entries but {name!r} has {len(values)}",
                (location, name, -1),
            )
        for index, item in enumerate(value):
            has_value = index < len(values) and values[index] is not None
            if item is not None:
                self._element(item, key, (location, name, index), ctx, has_value)
            elif not has_value:
                ctx.error("structure", f"{name!r} and {key!r} are both null", (location, name, index))

    def _element(self, value: Any, key: str, location: Location, ctx: _Context, has_value: bool) -> None:
        if type(value) is not dict:
            ctx.error("structure", f"{key!r} must hold objects with id and extension", location)
        elif not value:
            ctx.error("structure", f"{key!r} must not hold an empty object", location)
        else:
            self._object(value, self._element_node, location, ctx)
            if not has_value and "extension" not in value:
                ctx.error("invariant", "ele-1: a primitive element must have a value or extensions", location)

    # -------------------------------------------------------------------------------- data type rules
    def _extension(self, obj: dict[str, Any], rule: ElementRule, location: Location, ctx: _Context) -> None:
        has_value = any(key.startswith(("value", "_value")) for key in obj)
        if has_value == ("extension" in obj):
            problem = "has both" if has_value else "has neither"
            ctx.error(
                "invariant",
                f"ext-1: an extension must have either extensions or a value[x]; this one {problem}",
                location,
            )

    def _reference(self, obj: dict[str, Any], rule: ElementRule, location: Location, ctx: _Context) -> None:
        ref = obj.get("reference")
        if type(ref) is not str or not ref:
            return
        where: Location = (location, "reference", -1)
        if ref[0] == "#":
            ctx.add_hash(ref)
            if ctx.local_refs is None:
                ctx.local_refs = []
            ctx.local_refs.append((ref, where))
            return
        if ":" in ref:  # absolute URL, urn:uuid:, urn:oid:
            return
        query = ref.find("?")
        if query >= 0:  # a conditional reference (transactions)
            rtype = ref[:query]
        else:
            match = _RELATIVE_REFERENCE(ref)
            if match is None:
                ctx.error("value", f"{ref!r} is not a valid literal reference", where)
                return
            rtype = match.group(1)
        if not self._defs.is_resource_type(rtype):
            ctx.error("value", f"{ref!r} refers to an unknown resource type {rtype!r}", where)
            return
        targets = rule.targets
        if targets is not None and rtype not in targets and "Resource" not in targets:
            allowed = ", ".join(sorted(targets))
            ctx.error("value", f"{rule.path} cannot refer to {rtype} (allowed: {allowed})", where)

    def _codeable_concept(
        self, obj: dict[str, Any], rule: ElementRule, location: Location, ctx: _Context
    ) -> None:
        valueset = rule.valueset
        if valueset is None or not valueset.checkable:
            return
        codings = obj.get("coding")
        if type(codings) is list and any(type(c) is dict and _in_valueset(c, valueset) for c in codings):
            return
        problem = "has no coding from" if codings else "has only text; a coding is required from"
        ctx.error("code-invalid", f"{rule.path} {problem} the required value set {valueset.url}", location)

    def _coding(self, obj: dict[str, Any], rule: ElementRule, location: Location, ctx: _Context) -> None:
        valueset = rule.valueset
        if valueset is not None and valueset.checkable and not _in_valueset(obj, valueset):
            ctx.error(
                "code-invalid",
                f"{obj.get('system')}#{obj.get('code')} is not in the required value set {valueset.url}",
                location,
            )


def _choose(
    chosen: dict[str, str] | None, rule: ElementRule, location: Location, ctx: _Context
) -> dict[str, str]:
    """Record the variant of a choice element; report a second, different one."""
    assert rule.choice_of is not None
    if chosen is None:
        return {rule.choice_of: rule.name}
    previous = chosen.setdefault(rule.choice_of, rule.name)
    if previous != rule.name:
        ctx.error(
            "structure",
            f"only one {rule.choice_of}[x] is allowed, found {previous!r} and {rule.name!r}",
            (location, rule.name, -1),
        )
    return chosen


def _not_an_object(key: str, rule: ElementRule, value: Any) -> str:
    if value is None:
        return f"{key!r} must not be null"
    if type(value) is list:
        return f"{key!r} has at most one value and must not be an array"
    return f"expected a JSON object for {key!r} ({rule.type_code})"


def _in_valueset(coding: dict[str, Any], valueset: ValueSet) -> bool:
    system, code = coding.get("system"), coding.get("code")
    return type(system) is str and type(code) is str and code in valueset.systems.get(system, _EMPTY)

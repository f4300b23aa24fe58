"""One search parameter compiled for one resource type: its selectors (navigator + normaliser per static type),
or its fhirpathpy fallback, and for composites the components compiled relative to each selected element.

Entries of one parameter are de-duplicated (a CodeableConcept repeating a coding, a union selecting the same
element twice) keeping first-seen order.  A composite element contributes a :class:`CompositeEntry` only when
every component has at least one entry (otherwise no composite search could match it); the component entries
carry the component definition's own code (``code``, ``value-quantity``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from fhir_server.indexing._compile import Branch, CannotCompile, Compiler
from fhir_server.indexing._fallback import Fallback
from fhir_server.indexing._fp_parse import Unsupported, parse
from fhir_server.indexing._normalise import Normaliser, Normalisers
from fhir_server.indexing._refs import References
from fhir_server.indexing._runners import Nav, root_runner, runner
from fhir_server.indexing._types import Ctx, TypeSystem
from fhir_server.indexing.entries import CompositeEntry, Entry

__all__ = ["SLOTS", "CompiledParam", "Environment", "Memo", "ParamLike", "compile_param", "normalised"]

SLOTS = {
    "string": 0,
    "token": 1,
    "date": 2,
    "number": 3,
    "quantity": 4,
    "reference": 5,
    "uri": 6,
    "composite": 7,
}
Typed = tuple[Any, str | None]
Out = list[Any]
Memo = dict[tuple[int, str, int], list[Entry]]


class ParamLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def expression(self) -> str | None: ...
    @property
    def components(self) -> tuple[tuple[str, str], ...]: ...


@dataclass(slots=True)
class Environment:
    """What compiling needs: types, references, normalisers, component definitions by URL, and a note sink."""

    types: TypeSystem
    refs: References
    normalisers: Normalisers
    by_url: Callable[[str], ParamLike | None]
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Component:
    code: str
    type: str
    expression: str
    selectors: list[tuple[Nav, Normaliser]]
    fallback: Fallback | None = None
    unindexed: list[Nav] = field(default_factory=list)  # branches selecting values of a type it cannot index
    normalisers: Normalisers | None = None  # for fallback values, typed at run time
    # the properties of the element at least one of which it needs to pick anything (None: not known statically)
    first_keys: frozenset[str] | None = None

    def pick(
        self, resource: dict[str, Any], element: Any, element_type: str | None
    ) -> list[tuple[Any, Normaliser]]:
        """The values this component selects within ``element``, each with its normaliser."""
        if self.fallback is None:
            items = [element]
            return [(value, normalise) for nav, normalise in self.selectors for value in nav(items, resource)]
        assert self.normalisers is not None
        picked = []
        for value, type_code in self.fallback.select(resource, element, element_type):
            normalise = self.normalisers.for_type(self.type, type_code or _guess(value, self.type))
            if normalise is not None:
                picked.append((value, normalise))
        return picked


@dataclass(slots=True)
class CompiledParam:
    """A parameter ready to extract from resources of one type."""

    code: str
    type: str
    slot: int
    selectors: list[tuple[Callable[[dict[str, Any]], list[Any]], Normaliser, Ctx]]
    fallback: Fallback | None = None
    components: list[list[_Component]] = field(default_factory=list)  # per selector, for composites
    env: Environment | None = None
    unindexed: list[tuple[Callable[[dict[str, Any]], list[Any]], Ctx]] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)  # as compiled, for :attr:`first_keys`
    plain: bool = False  # neither a composite nor evaluated by fhirpathpy
    shared: bool = False  # a composite of the same type has a component with this code: memoise its entries
    local: bool = False  # plain, and its values depend only on the elements at :attr:`first_keys` and ``contained``

    def extract(self, resource: dict[str, Any], out: Out, memo: Memo | None = None) -> None:
        """Append this parameter's entries for ``resource`` to ``out``.  ``memo`` (one per resource) lets a
        composite reuse the entries a plain parameter made for the same value, and vice versa."""
        found: list[Any] = []
        if self.plain:
            code = self.code
            if memo is not None and self.shared:
                for run, normalise, _ctx in self.selectors:
                    for value in run(resource):
                        found.extend(normalised(memo, normalise, code, value, resource))
            else:
                for run, normalise, _ctx in self.selectors:
                    for value in run(resource):
                        normalise(code, value, resource, found)
        elif self.type == "composite":
            self._composites(resource, found, memo)
        else:
            self._fallback_entries(resource, found)
        if found:
            out.extend(dict.fromkeys(found) if len(found) > 1 else found)

    @property
    def first_keys(self) -> frozenset[str] | None:
        """The top-level JSON properties at least one of which must be present for this parameter to select
        anything; None when that is not known statically (computed values, ``%resource``, the fallback)."""
        if self.fallback is not None:
            return None
        keys = set()
        for branch in self.branches:
            if not branch.steps or not isinstance(branch.steps[0], str):
                return None
            keys.add(branch.steps[0])
        return frozenset(keys)

    @property
    def needs(self) -> tuple[tuple[frozenset[str], ...], ...] | None:
        """For a parameter that can make entries only when the resource has certain top-level properties: per
        branch, the key sets of which it needs one each (a composite on the resource itself, such as
        ``Observation.code-value-quantity``, needs a property of every component).  None when not known."""
        if self.fallback is not None:
            return None
        out: list[tuple[frozenset[str], ...]] = []
        for number, branch in enumerate(self.branches):
            if branch.steps and isinstance(branch.steps[0], str):
                out.append((frozenset((branch.steps[0],)),))
                continue
            if branch.steps or self.type != "composite" or number >= len(self.components):
                return None
            known = tuple(c.first_keys for c in self.components[number] if c.first_keys is not None)
            if not known:
                return None
            out.append(known)
        return tuple(out)

    def select(self, resource: dict[str, Any]) -> list[Typed]:
        """The typed values the expression selects, before normalisation (for tests and tools)."""
        if self.fallback is not None:
            return self.fallback.select(resource)
        selected = [(run, ctx) for run, _n, ctx in self.selectors] + self.unindexed
        return [(value, ctx.type) for run, ctx in selected for value in run(resource)]

    def _fallback_entries(self, resource: dict[str, Any], found: list[Any]) -> None:
        assert self.fallback is not None and self.env is not None
        for value, type_code in self.fallback.select(resource):
            normalise = self.env.normalisers.for_type(self.type, type_code or _guess(value, self.type))
            if normalise is not None:
                normalise(self.code, value, resource, found)

    def _composites(self, resource: dict[str, Any], found: list[Any], memo: Memo | None) -> None:
        if self.fallback is not None:
            for node in self.fallback.nodes(resource):
                self._composite(resource, node.data, node.path, self._fallback_components(), found, None)
            return
        for (run, _n, ctx), components in zip(self.selectors, self.components, strict=True):
            for element in run(resource):
                self._composite(resource, element, _fhirpath_type(ctx), components, found, memo)

    def _fallback_components(self) -> list[_Component]:
        return self.components[0] if self.components else []

    def _composite(
        self, resource: dict[str, Any], element: Any, element_type: str | None, components: list[_Component],
        found: list[Any], memo: Memo | None,
    ) -> None:  # fmt: skip
        """One CompositeEntry for ``element`` when every component has entries.  Selection comes first and is
        cheap, so an element missing a component costs no normalisation."""
        picked = []
        for component in components:
            values = component.pick(resource, element, element_type)
            if not values:
                return
            picked.append(values)
        parts: list[tuple[Entry, ...]] = []
        for component, values in zip(components, picked, strict=True):
            entries: list[Entry] = []
            reuse = memo if component.fallback is None else None  # fallback values may be fresh objects
            for value, normalise in values:
                entries.extend(normalised(reuse, normalise, component.code, value, resource))
            if not entries:
                return
            parts.append(tuple(dict.fromkeys(entries)) if len(entries) > 1 else tuple(entries))
        if parts:
            found.append(CompositeEntry(self.code, tuple(parts)))


def normalised(
    memo: Memo | None, normalise: Normaliser, code: str, value: Any, resource: dict[str, Any]
) -> list[Entry]:
    """The entries of one value, from ``memo`` when the same value was normalised for the same code before.
    Keys use object identity: the values are objects of the resource being indexed, alive during the call."""
    if memo is None:
        fresh: list[Entry] = []
        normalise(code, value, resource, fresh)
        return fresh
    key = (id(value), code, id(normalise))
    found = memo.get(key)
    if found is None:
        found = memo[key] = []
        normalise(code, value, resource, found)
    return found


def _fhirpath_type(ctx: Ctx) -> str:
    """How fhirpathpy names the type of an element: its path for backbone elements, else the type."""
    return ctx.element if ctx.type in ("BackboneElement", "Element") and "." in ctx.element else ctx.type


def compile_param(param: ParamLike, resource_type: str, env: Environment) -> CompiledParam | None:
    """Compile ``param`` for ``resource_type``; None when it selects nothing there."""
    assert param.expression is not None
    root = env.types.of_type(resource_type)
    compiled = CompiledParam(param.code, param.type, SLOTS[param.type], [], env=env)
    compiler = Compiler(env.types, env.refs, root)
    try:
        branches = compiler.branches(parse(param.expression), root)
    except (Unsupported, CannotCompile):
        compiled.fallback = Fallback(param.expression, resource_type, env.refs)
        branches = []
    env.notes.extend(f"{resource_type}.{param.code}: {note}" for note in compiler.notes)
    compiled.branches = list(branches)
    compiled.plain = compiled.fallback is None and param.type != "composite"
    # a step sees the resource only through ``%resource`` (reads_root) and ``resolve()`` of a ``#id`` reference
    # (its ``contained``); without the former a plain parameter reads nothing outside its first keys' elements
    compiled.local = compiled.plain and not compiler.reads_root
    if param.type == "composite":
        return _compile_composite(param, compiled, branches, env)
    for branch in branches:
        normalise = env.normalisers.for_ctx(param.type, branch.ctx)
        if normalise is None:
            env.notes.append(
                f"{resource_type}.{param.code}: {branch.ctx.type} values are not {param.type}-searchable"
            )
            compiled.unindexed.append((root_runner(branch.steps), branch.ctx))
            continue
        compiled.selectors.append((root_runner(branch.steps), normalise, branch.ctx))
    return compiled if compiled.selectors or compiled.fallback or compiled.unindexed else None


def _compile_composite(
    param: ParamLike, compiled: CompiledParam, branches: Sequence[Branch], env: Environment
) -> CompiledParam | None:
    definitions = []
    for url, expression in param.components:
        definition = env.by_url(url)
        if definition is None or definition.type in ("composite", "special"):
            env.notes.append(f"{param.code}: component {url} is not a usable search parameter")
            return None
        definitions.append((definition, expression))
    definitions = _pair_components(definitions)
    if compiled.fallback is not None:
        compiled.components = [[_compile_component(d, e, None, env) for d, e in definitions]]
        return compiled
    for branch in branches:
        compiled.selectors.append((root_runner(branch.steps), _no_normaliser, branch.ctx))
        compiled.components.append([_compile_component(d, e, branch.ctx, env) for d, e in definitions])
    return compiled if compiled.selectors else None


def _fits(definition: ParamLike, expression: str) -> bool:
    """True when one alternative of the definition's own expression ends with the component's path."""
    alternatives = (definition.expression or "").replace(" ", "").split("|")
    return any(alt.endswith("." + expression.replace(" ", "")) for alt in alternatives)


def _pair_components(definitions: list[tuple[ParamLike, str]]) -> list[tuple[ParamLike, str]]:
    """R4 erratum: ``DocumentReference-relationship`` pairs each component definition with the other's
    expression (``relatesto`` with ``code``, ``relation`` with ``target``).  When the given pairing does not fit
    the definitions' own expressions but exactly one re-pairing fits them all, the expressions are re-paired;
    the components keep their order (so the query side parses ``$``-separated values by the same types)."""
    if all(_fits(d, e) for d, e in definitions) or len(definitions) > 4:
        return definitions
    expressions = [e for _d, e in definitions]
    fitting = [
        order
        for order in itertools.permutations(expressions)
        if all(_fits(d, e) for (d, _e), e in zip(definitions, order, strict=True))
    ]
    if len(fitting) != 1:
        return definitions
    return [(d, e) for (d, _e), e in zip(definitions, fitting[0], strict=True)]


def _compile_component(
    definition: ParamLike, expression: str, ctx: Ctx | None, env: Environment
) -> _Component:
    component = _Component(definition.code, definition.type, expression, [], normalisers=env.normalisers)
    if ctx is not None:
        compiler = Compiler(env.types, env.refs, env.types.of_type(_root_type(ctx, env)))
        try:
            keys: set[str] | None = set()
            for branch in compiler.branches(parse(expression), ctx):
                normalise = env.normalisers.for_ctx(definition.type, branch.ctx)
                if normalise is not None:
                    component.selectors.append((runner(branch.steps), normalise))
                    if keys is not None and branch.steps and isinstance(branch.steps[0], str):
                        keys.add(branch.steps[0])
                    else:
                        keys = None
                else:
                    component.unindexed.append(runner(branch.steps))
            component.first_keys = frozenset(keys) if keys is not None else None
            return component
        except (Unsupported, CannotCompile):
            pass
    component.fallback = Fallback(expression, "Resource", env.refs)
    return component


def _root_type(ctx: Ctx, env: Environment) -> str:
    """The resource type an element context belongs to (for ``%resource`` in component expressions)."""
    head = ctx.element.split(".", 1)[0]
    return head if env.types.is_resource_type(head) else "Resource"


def _no_normaliser(param: str, value: Any, resource: dict[str, Any], out: list[Entry]) -> None:
    """Composite selectors select elements; their components are normalised instead."""


def _guess(value: Any, param_type: str) -> str:
    """The likely FHIR type of an untyped fallback value, from its JSON shape ("" when unknown)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "decimal"
    if isinstance(value, str):
        return {"date": "dateTime", "reference": "uri", "uri": "uri", "token": "code"}.get(
            param_type, "string"
        )
    if not isinstance(value, dict):
        return ""
    for key, type_code in _SHAPES:
        if key in value:
            return type_code
    if "value" in value:
        return "Quantity" if isinstance(value["value"], int | Decimal | float) else "Identifier"
    return "Coding" if "code" in value else ""


_SHAPES = (
    ("resourceType", "Resource"),
    ("reference", "Reference"),
    ("coding", "CodeableConcept"),
    ("family", "HumanName"),
    ("given", "HumanName"),
    ("line", "Address"),
    ("city", "Address"),
    ("start", "Period"),
    ("end", "Period"),
    ("low", "Range"),
    ("high", "Range"),
    ("currency", "Money"),
)

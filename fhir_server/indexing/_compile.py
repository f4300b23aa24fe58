"""Compile search parameter expressions into fast navigators over the JSON dict of a resource.

An expression is compiled once per resource type into :class:`Branch` es: each branch is a pipeline of steps with
one static type (:class:`~fhir_server.indexing._types.Ctx`), so the normaliser for its values is chosen at compile
time.  A step is either a JSON property name (consecutive names are fused into one walk) or a function
``(items, root) -> items``.  Choice elements and type filters are resolved statically: ``Observation.value as
Quantity`` is the single walk ``valueQuantity``; ``Observation.value`` is one branch per ``value[x]`` type.

What compiles: member navigation (choice elements included), ``|``, ``as``/``as()``/``ofType()``/``is``,
``where()`` (with fast paths for ``resolve() is T`` and ``field = 'literal'``), ``[n]``, ``first()``,
``last()``, ``tail()``, ``skip(n)``, ``take(n)``, ``extension('url')``, ``exists()``, ``empty()``, ``not()``,
``count()``, ``hasValue()``, ``=``, ``!=``, ``and``, ``or``, ``xor``, ``implies``, literals, ``{}``,
``%resource``/``%context``/``%rootResource``, ``$this``.  Anything else raises :class:`CannotCompile` and the
expression is evaluated by fhirpathpy instead (see :mod:`fhir_server.indexing._fallback`).

Semantics and decisions:

* ``as`` filters each item by type, like ``ofType`` (the R4 expressions apply it to collections, e.g.
  ``Observation.component.value.as(Quantity)``, where FHIRPath N1 would raise an error).
* A leading identifier that names the context's type or one of its supertypes (``Patient``, ``Resource``,
  ``DomainResource``) selects the context; another type name selects nothing — that is how one
  multi-resource expression (``AllergyIntolerance.patient | CarePlan.subject...``) compiles per type.
* ``[n]``/``first()`` over a union of differently typed branches cannot keep document order statically and is
  left to the fallback; so are ``.id``/``.extension`` of a primitive (they live in the ``_name`` JSON property)
  and members of a resource whose type is only known at run time.  Other members of a primitive select nothing.
* Comparisons and boolean operators follow FHIRPath's empty-propagation and three-valued logic; where FHIRPath
  would raise (a multi-item operand of ``and``), the result is empty.
* Navigators return lists that may be the resource's own arrays (never mutate them) and may contain JSON
  ``null`` items or non-objects from malformed input; normalisers skip what is not of the expected shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_server.indexing._fp_parse import (
    Binary,
    Call,
    Empty,
    Expr,
    Ident,
    Index,
    Literal,
    Member,
    TypeName,
    Unary,
    Var,
)
from fhir_server.indexing._fp_semantics import (
    AGGREGATE_TYPES,
    AGGREGATES,
    LOGIC,
    POSITIONS,
    CannotCompile,
    exists,
    truth,
)
from fhir_server.indexing._refs import References
from fhir_server.indexing._runners import (
    EMPTY,
    Nav,
    Step,
    const,
    resource_filter,
    root_step,
    runner,
    union,
    url_filter,
)
from fhir_server.indexing._types import RESOURCE, Ctx, TypeSystem

__all__ = ["Branch", "CannotCompile", "Compiler"]

Pred = Callable[[Any, dict[str, Any]], bool]
_PRIMITIVE_CHILDREN = frozenset({"id", "extension", "value"})


@dataclass(frozen=True, slots=True)
class Branch:
    steps: tuple[str | Step, ...]
    ctx: Ctx


@dataclass(slots=True)
class Compiler:
    """Compiles parsed expressions for resources of one type (``root``)."""

    types: TypeSystem
    refs: References
    root: Ctx
    notes: list[str] = field(default_factory=list)  # unknown elements met (they select nothing)
    reads_root: bool = False  # some branch starts again from the resource (``%resource``): not local to a subtree

    # ----------------------------------------------------------------------------------------- collections
    def branches(self, expr: Expr, ctx: Ctx) -> list[Branch]:
        """The branches of ``expr`` evaluated on items of type ``ctx``."""
        match expr:
            case Ident(name):
                return self._ident(name, ctx)
            case Member(base, name):
                return [out for b in self.branches(base, ctx) for out in self._member(b, name)]
            case Call(base, name, args):
                return self._call(base, name, args, ctx)
            case Index(base, Literal(int() as n)):
                return self._position(self.branches(base, ctx), lambda items: items[n : n + 1])
            case Literal(value):
                return [Branch((const(value),), self.types.of_type(_literal_type(value)))]
            case Empty():
                return []
            case Var(name):
                return self._variable(name, ctx)
            case Binary(op, left, right):
                return self._binary(op, left, right, ctx)
            case Unary() | Index():
                raise CannotCompile(f"unsupported {type(expr).__name__}")
        raise CannotCompile(f"unsupported {expr!r}")

    def navigator(self, expr: Expr, ctx: Ctx) -> Nav:
        """One function giving the whole collection ``expr`` selects."""
        runners = [runner(b.steps) for b in self.branches(expr, ctx)]
        return union(runners)

    def _ident(self, name: str, ctx: Ctx) -> list[Branch]:
        if ctx.type != RESOURCE and self.types.has_member(ctx, name):
            return self._member(Branch((), ctx), name)
        if self.types.is_type_name(name):
            return self._of_type([Branch((), ctx)], name)
        if ctx.type == RESOURCE or ctx.node is None:
            raise CannotCompile(f"{name} on a {ctx.type}")
        self.notes.append(f"no element {name!r} in {ctx.element}")
        return []

    def _member(self, branch: Branch, name: str) -> list[Branch]:
        ctx = branch.ctx
        if ctx.type == RESOURCE or (ctx.node is None and name in _PRIMITIVE_CHILDREN):
            raise CannotCompile(f".{name} on a {ctx.type}")  # a resource of unknown type; a primitive's "_x"
        if ctx.node is None:
            return []  # other members of a primitive (``valueString.city``) do not exist
        members = self.types.members(ctx, name)
        if not members:
            self.notes.append(f"no element {name!r} in {ctx.element}")
        return [Branch((*branch.steps, key), child) for key, child in members]

    def _variable(self, name: str, ctx: Ctx) -> list[Branch]:
        if name in ("resource", "context", "rootResource"):
            self.reads_root = True
            return [Branch((root_step,), self.root)]
        if name == "this":
            return [Branch((), ctx)]
        raise CannotCompile(f"%{name}")

    def _binary(self, op: str, left: Expr, right: Expr | TypeName, ctx: Ctx) -> list[Branch]:
        if op == "|" and not isinstance(right, TypeName):
            return self.branches(left, ctx) + self.branches(right, ctx)
        if isinstance(right, TypeName):
            wanted = self.types.type_name(right.name, right.namespace)
            if op == "as":
                return self._of_type(self.branches(left, ctx), wanted)
            return [self._computed(self._type_test(self.branches(left, ctx), wanted), "boolean")]
        return [self._computed(self._logic(op, left, right, ctx), "boolean")]

    # ---------------------------------------------------------------------------------------------- calls
    def _call(self, base: Expr | None, name: str, args: tuple[Expr, ...], ctx: Ctx) -> list[Branch]:
        if name in ("as", "ofType", "is") and len(args) == 1:
            wanted = _type_arg(args[0], self.types)
            bases = self._bases(base, ctx)
            if name == "is":
                return [self._computed(self._type_test(bases, wanted), "boolean")]
            return self._of_type(bases, wanted)
        if name == "where" and len(args) == 1:
            return [self._where(b, args[0]) for b in self._bases(base, ctx)]
        if name == "extension" and len(args) == 1 and isinstance(args[0], Literal):
            url = args[0].value
            found = [out for b in self._bases(base, ctx) for out in self._member(b, "extension")]
            return [Branch((*b.steps, url_filter(url)), b.ctx) for b in found]
        position = POSITIONS.get(name)
        if position is not None:
            return self._position(self._bases(base, ctx), position(args))
        aggregate = AGGREGATES.get(name)
        if aggregate is not None and not args:
            nav = union([runner(b.steps) for b in self._bases(base, ctx)])
            return [self._computed(_aggregate_step(nav, aggregate), AGGREGATE_TYPES[name])]
        if name == "exists" and len(args) == 1:
            nav = union([runner(self._where(b, args[0]).steps) for b in self._bases(base, ctx)])
            return [self._computed(_aggregate_step(nav, exists), "boolean")]
        raise CannotCompile(f"function {name}()")

    def _bases(self, base: Expr | None, ctx: Ctx) -> list[Branch]:
        return [Branch((), ctx)] if base is None else self.branches(base, ctx)

    def _where(self, branch: Branch, criteria: Expr) -> Branch:
        pred = self._predicate(criteria, branch.ctx)

        def where(items: list[Any], root: dict[str, Any]) -> list[Any]:
            return [item for item in items if pred(item, root)]

        return Branch((*branch.steps, where), branch.ctx)

    def _position(self, bases: list[Branch], pick: Callable[[list[Any]], list[Any]]) -> list[Branch]:
        if len(bases) > 1:
            raise CannotCompile("a positional function over a union of types")
        if not bases:
            return []

        def position(items: list[Any], root: dict[str, Any]) -> list[Any]:
            return pick(items)

        return [Branch((*bases[0].steps, position), bases[0].ctx)]

    def _of_type(self, bases: list[Branch], wanted: str) -> list[Branch]:
        out: list[Branch] = []
        for b in bases:
            if b.ctx.type == RESOURCE and self.types.is_resource_type(wanted):
                kinds = frozenset(t for t in self.refs.resource_types if self.types.is_subtype(t, wanted))
                out.append(Branch((*b.steps, resource_filter(kinds)), self.types.of_type(wanted)))
            elif self.types.is_subtype(b.ctx.type, wanted):
                out.append(b)
        return out

    def _computed(self, step: Step, type_code: str) -> Branch:
        return Branch((step,), self.types.of_type(type_code))

    # ------------------------------------------------------------------------------------------- booleans
    def _predicate(self, criteria: Expr, ctx: Ctx) -> Pred:
        """A per-item test for ``where(criteria)``: true when criteria evaluates to true on the item."""
        match criteria:
            case Binary("is", Call(None, "resolve", ()), TypeName(name, namespace)):
                wanted = self.types.type_name(name, namespace)
                kinds = frozenset(t for t in self.refs.resource_types if self.types.is_subtype(t, wanted))
                referenced_type = self.refs.referenced_type
                return lambda item, root: referenced_type(item, root) in kinds
            case Binary("=", Ident(name), Literal(str() as literal)) if self._single_primitive(ctx, name):
                key = self.types.members(ctx, name)[0][0]
                return lambda item, root: type(item) is dict and item.get(key) == literal
        nav = self.navigator(criteria, ctx)
        return lambda item, root: truth(nav([item], root)) is True

    def _single_primitive(self, ctx: Ctx, name: str) -> bool:
        if ctx.node is None:
            return False
        rules = [r for r in ctx.node.elements.values() if r.name == name]
        return len(rules) == 1 and rules[0].is_primitive and not rules[0].is_array

    def _type_test(self, bases: list[Branch], wanted: str) -> Step:
        navs = [runner(b.steps) for b in bases]
        answers = [self._is_a(b.ctx, wanted) for b in bases]

        def test(items: list[Any], root: dict[str, Any]) -> list[Any]:
            found = [(answer, v) for nav, answer in zip(navs, answers, strict=True) for v in nav(items, root)]
            if len(found) != 1:
                return EMPTY
            answer, value = found[0]
            if answer is None:  # a resource of a type known only at run time
                kind = value.get("resourceType") if type(value) is dict else None
                return [type(kind) is str and self.types.is_subtype(kind, wanted)]
            return [answer]

        return test

    def _is_a(self, ctx: Ctx, wanted: str) -> bool | None:
        if ctx.type == RESOURCE:
            return None
        return self.types.is_subtype(ctx.type, wanted)

    def _logic(self, op: str, left: Expr, right: Expr, ctx: Ctx) -> Step:
        combine = LOGIC.get(op)
        if combine is None:
            raise CannotCompile(f"operator {op}")
        lnav, rnav = self.navigator(left, ctx), self.navigator(right, ctx)

        def logic(items: list[Any], root: dict[str, Any]) -> list[Any]:
            return combine(lnav(items, root), rnav(items, root))

        return logic


def _aggregate_step(nav: Nav, aggregate: Callable[[list[Any]], list[Any]]) -> Step:
    return lambda items, root: aggregate(nav(items, root))


def _type_arg(arg: Expr, types: TypeSystem) -> str:
    match arg:
        case Ident(name):
            return types.type_name(name)
        case Member(Ident(namespace), name):
            return types.type_name(name, namespace)
    raise CannotCompile(f"type argument {arg!r}")


def _literal_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "decimal"
    return "string"

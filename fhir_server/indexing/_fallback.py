"""fhirpathpy evaluation for the expressions the fast compiler cannot handle (parsed once, R4 model).

Results come back as fhirpathpy ``ResourceNode`` s; their FHIR type is read from the node (a type name, or an
element path looked up in the model's ``path2Type``; backbone elements are ``BackboneElement``) so the same
normalisers apply as for compiled paths.  Computed values (booleans, strings, numbers) get their FHIR primitive
type.

Adaptations to fhirpathpy, shared with the differential test:

* ``resolve()`` is provided: it yields a stub ``{"resourceType": T}`` typed ``T``, where ``T`` is what
  :meth:`References.referenced_type` reads from the reference — enough for ``resolve() is T``, the only use
  search expressions make of it.
* fhirpathpy matches a leading type name only against the exact resource type, so a leading ``Resource`` or
  ``DomainResource`` is rewritten to the concrete type the expression is compiled for.
* ``%resource``/``%rootResource`` are bound to the resource being indexed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse as _parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.indexing._refs import References

__all__ = [
    "MODEL",
    "Fallback",
    "check_syntax",
    "concrete_expression",
    "evaluate",
    "node",
    "parse_fhirpath",
    "resolver",
]

MODEL: dict[str, Any] = cast(dict[str, Any], models["r4"])
parse_fhirpath = cast(Callable[[str], Any], _parse)
node = cast(Callable[[Any, "str | None"], ResourceNode], ResourceNode.create_node)
_apply = cast(Callable[..., list[Any]], fhirpathpy.apply_parsed_path)
_log = logging.getLogger(__name__)
_PATH_TYPES: dict[str, str] = MODEL["path2Type"]
_ABSTRACT_ROOT = re.compile(r"(?<![\w.%`])(?:Resource|DomainResource)(?=\.)")
Typed = tuple[Any, str | None]


def concrete_expression(expression: str, resource_type: str) -> str:
    """The expression with leading ``Resource.``/``DomainResource.`` replaced by ``resource_type``."""
    return _ABSTRACT_ROOT.sub(resource_type, expression)


def resolver(refs: References, resource: dict[str, Any]) -> dict[str, Any]:
    """A fhirpathpy user invocation table providing ``resolve()`` for one resource."""

    def resolve(inputs: list[Any]) -> list[Any]:
        found = []
        for item in inputs:
            kind = refs.referenced_type(item, resource)
            if kind is not None:
                found.append(node({"resourceType": kind}, kind))
        return found

    return {"resolve": {"fn": resolve}}


_SYSTEM = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal"}


def _path_type(path: Any) -> str | None:
    """The FHIR type of a fhirpathpy node path: a type name, ``System.X``, or an element path."""
    if not isinstance(path, str):
        return None
    if path.startswith("System."):
        return _SYSTEM.get(path[7:])
    if "." not in path:
        return path
    found = _PATH_TYPES.get(path)
    if found is None:
        return "BackboneElement"
    return _path_type(found) if found.startswith("System.") else found


def _typed(item: Any) -> Typed | None:
    if isinstance(item, ResourceNode):
        return item.data, _path_type(item.path)
    if isinstance(item, bool):
        return item, "boolean"
    if isinstance(item, int):
        return item, "integer"
    if isinstance(item, Decimal | float):
        return item, "decimal"
    if isinstance(item, str):
        return item, "string"
    return None


class Fallback:
    """One expression evaluated by fhirpathpy, for resources of one type."""

    def __init__(self, expression: str, resource_type: str, refs: References) -> None:
        """Parse once; raises ValueError when fhirpathpy cannot parse the expression either."""
        self.expression = concrete_expression(expression, resource_type)
        self.refs = refs
        self._parsed = check_syntax(self.expression)

    def select(self, resource: dict[str, Any], item: Any = None, item_type: str | None = None) -> list[Typed]:
        """The typed values the expression selects on ``resource`` (or, given ``item``, on that element of it,
        whose FHIR type or element path is ``item_type``)."""
        found = map(_typed, self._evaluate(resource, item, item_type))
        return [typed for typed in found if typed is not None and typed[0] is not None]

    def nodes(self, resource: dict[str, Any]) -> list[ResourceNode]:
        """The elements the expression selects, as fhirpathpy nodes (``.data``, ``.path``)."""
        return [node for node in self._evaluate(resource, None, None) if isinstance(node, ResourceNode)]

    def _evaluate(self, resource: dict[str, Any], item: Any, item_type: str | None) -> list[Any]:
        """fhirpathpy's results; an evaluation error (``Expected singleton``, ...) selects nothing and is
        logged, so that indexing a resource never fails."""
        try:
            return evaluate(self._parsed, self.refs, resource, item, item_type)
        except Exception as exc:
            _log.warning("fhirpathpy could not evaluate %r: %s", self.expression, exc)
            return []


class _RaiseOnError(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise ValueError(f"column {column + 1}: {msg}")


def check_syntax(expression: str) -> Any:
    """fhirpathpy's parse of ``expression``; ValueError when it is not valid FHIRPath.  (fhirpathpy's own parser
    ignores syntax errors, so the expression is first run through its generated grammar with errors raised.)"""
    listener = _RaiseOnError()
    try:
        lexer = FHIRPathLexer(InputStream(expression))
        lexer.removeErrorListeners()
        lexer.addErrorListener(listener)
        parser: Any = FHIRPathParser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        parser.addErrorListener(listener)
        parser.entireExpression()
        return parse_fhirpath(expression)
    except Exception as exc:
        raise ValueError(f"invalid FHIRPath expression {expression!r}: {exc}") from exc


def evaluate(
    parsed: Any, refs: References, resource: dict[str, Any], item: Any = None, item_type: str | None = None
) -> list[Any]:
    """Raw fhirpathpy results of a parsed expression on ``resource`` (or on its element ``item``), with the
    adaptations of the module docstring."""
    start = resource if item is None else node(item, item_type)
    variables = {"resource": resource, "rootResource": resource}
    options = {"returnRawData": True, "userInvocationTable": resolver(refs, resource)}
    return list(_apply(start, parsed, variables, MODEL, options))

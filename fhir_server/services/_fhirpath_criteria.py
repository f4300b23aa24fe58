"""``where(...)`` criteria of FHIRPath Patch paths, evaluated by fhirpathpy on one candidate at a time.

The criteria text is parsed once, strictly: fhirpathpy's own ``parse`` silently recovers from syntax errors
(``system = = 'x'`` parses), so the same generated ANTLR parser is driven here with an error listener that raises,
and the whole text must be consumed.  A syntax error, an unknown function or an undefined ``%variable`` is a
malformed patch (400).

Each candidate is wrapped in a fhirpathpy ``ResourceNode`` carrying its type scope (``Observation.component``,
``HumanName``), so choice navigation such as ``value.ofType(Quantity)`` works on elements inside a resource.  A
primitive candidate is seen as its bare value (``$this = 'x'``): fhirpathpy 2.2 cannot show a primitive's ``_x``
extensions to criteria evaluated on that primitive alone.  ``%resource`` and ``%rootResource`` are the
resource being patched.  A candidate matches when the criteria give ``true`` (or, by FHIRPath's singleton rule, a
single non-boolean value); an empty result or ``false`` does not match; more than one value is an error (422).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import InvalidRequest, ValidationFailed

__all__ = ["Criteria", "compile_criteria"]

_R4_MODEL: dict[str, Any] = models["r4"]


class _SyntaxError(ValueError):
    pass


class _RaisingListener(ErrorListener):  # type: ignore[misc]
    def syntaxError(  # ANTLR's callback name
        self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise _SyntaxError(f"column {column + 1}: {msg}")


@dataclass(frozen=True)
class Criteria:
    """A parsed ``where`` criteria expression."""

    text: str
    tree: Any = field(repr=False, compare=False)

    def matches(self, value: Any, scope: str | None, root: dict[str, Any], where: str) -> bool:
        """Evaluate the criteria with ``value`` (a value of type ``scope``) as ``$this``."""
        node = ResourceNode.create_node(value, scope)  # type: ignore[no-untyped-call]
        variables = {"resource": root, "rootResource": root}
        try:
            result = apply_parsed_path(node, self.tree, variables, _R4_MODEL)  # type: ignore[no-untyped-call]
        except Exception as exc:  # fhirpathpy raises bare Exception/ValueError/TypeError
            raise InvalidRequest(f"cannot evaluate where({self.text}): {exc}", expression=where) from exc
        return _truth(result, self.text, where)


def compile_criteria(text: str, where: str) -> Criteria:
    """Parse ``text`` strictly and check it evaluates on an empty element (unknown functions, variables)."""
    try:
        tree = _parse(text)
    except _SyntaxError as exc:
        raise InvalidRequest(f"invalid FHIRPath in where({text}): {exc}", expression=where) from exc
    criteria = Criteria(text, tree)
    criteria.matches({}, None, {}, where)
    return criteria


@lru_cache(maxsize=256)
def _parse(text: str) -> Any:
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaisingListener())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_RaisingListener())
    tree = parser.expression()
    if parser.getCurrentToken().type != Token.EOF:
        raise _SyntaxError(f"unexpected {parser.getCurrentToken().text!r}")
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    ParseTreeWalker().walk(listener, tree)
    return listener.parentStack[0]


def _truth(result: list[Any], text: str, where: str) -> bool:
    if not result:
        return False
    if len(result) > 1:
        raise ValidationFailed(f"where({text}) gave {len(result)} values, not one boolean", expression=where)
    return result[0] is True or not isinstance(result[0], bool)

"""A parser for the FHIRPath subset that search parameter expressions use, producing a small AST.

The grammar follows FHIRPath N1 (the version R4 references): terms (identifiers, backtick-quoted identifiers,
``%variables``, ``$this``, string/number/boolean literals, ``{}``, parenthesised expressions, function calls),
postfix invocation (``.name``, ``.fn(args)``, ``[index]``), and binary operators with the specification's
precedence (lowest first): ``implies``; ``or``/``xor``; ``and``; ``in``/``contains``; ``=``/``~``/``!=``/``!~``;
``<``/``>``/``<=``/``>=``; ``|``; ``is``/``as``; ``+``/``-``/``&``; ``*``/``/``/``div``/``mod``; unary ``+``/``-``.

Anything outside that (``@`` date literals, quantities with units) raises :class:`Unsupported`, which makes the
compiler fall back to fhirpathpy for the whole expression.  The AST nodes are plain frozen dataclasses; the right
side of ``is``/``as`` is kept as a :class:`TypeName`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "Binary",
    "Call",
    "Empty",
    "Expr",
    "Ident",
    "Index",
    "Literal",
    "Member",
    "TypeName",
    "Unary",
    "Unsupported",
    "Var",
    "parse",
]


class Unsupported(ValueError):
    """The expression uses FHIRPath beyond what this parser (and the fast compiler) handles."""


@dataclass(frozen=True, slots=True)
class Ident:
    """A leading identifier: a member of the context item, or a type name filtering the context."""

    name: str


@dataclass(frozen=True, slots=True)
class Member:
    base: Expr
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    base: Expr | None  # None for a function invoked on the context item (``exists()``, ``resolve()``)
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Index:
    base: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | bool | int | Decimal


@dataclass(frozen=True, slots=True)
class Empty:
    """``{}``."""


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # "resource", "context", "ucum", "this" ($this), ...


@dataclass(frozen=True, slots=True)
class TypeName:
    name: str  # without a "FHIR." / "System." namespace
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Expr
    right: Expr | TypeName


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Expr


Expr = Ident | Member | Call | Index | Literal | Empty | Var | Binary | Unary

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<num>\d+(?:\.\d+)?)
    | (?P<date>@[0-9T:.+\-Z]*)
    | (?P<bq>`[^`]*`)
    | (?P<var>%[A-Za-z_][A-Za-z0-9_]*|%'[^']*'|%`[^`]*`)
    | (?P<dollar>\$[A-Za-z]+)
    | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|!=|!~|[-+*/&|=~<>.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BINARY = {
    "implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5, "<": 6, ">": 6, "<=": 6, ">=": 6,
    "|": 7, "is": 8, "as": 8, "+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}  # fmt: skip
_WORD_OPERATORS = frozenset(op for op in _BINARY if op.isalpha())


def _unescape(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        ch = match.group(1)
        if ch.startswith("u"):
            return chr(int(ch[1:], 16))
        return _ESCAPES.get(ch, ch)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", repl, body)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Unsupported(f"cannot read {text[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end of expression")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise Unsupported(f"expected {value!r}, found {token[1]!r}")

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value and token[0] in ("op", "id")

    def binary_op(self) -> str | None:
        token = self.peek()
        if token is None:
            return None
        kind, value = token
        if kind == "op" and value in _BINARY:
            return value
        if kind == "id" and value in _WORD_OPERATORS:
            return value
        return None

    def expression(self, min_precedence: int = 0) -> Expr:
        left = self.unary()
        while True:
            op = self.binary_op()
            if op is None or _BINARY[op] <= min_precedence:
                return left
            self.take()
            if op in ("is", "as"):
                left = Binary(op, left, self.type_name())
            else:
                left = Binary(op, left, self.expression(_BINARY[op]))

    def type_name(self) -> TypeName:
        kind, first = self.take()
        if kind not in ("id", "bq"):
            raise Unsupported(f"expected a type name, found {first!r}")
        first = first.strip("`")
        if self.at("."):
            self.take()
            return TypeName(self.take()[1].strip("`"), first)
        return TypeName(first)

    def unary(self) -> Expr:
        if self.at("-") or self.at("+"):
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.postfix(self.term())

    def postfix(self, expr: Expr) -> Expr:
        while True:
            if self.at("."):
                self.take()
                kind, name = self.take()
                if kind not in ("id", "bq"):
                    raise Unsupported(f"expected a name after '.', found {name!r}")
                name = name.strip("`")
                expr = Call(expr, name, self.arguments()) if self.at("(") else Member(expr, name)
            elif self.at("["):
                self.take()
                index = self.expression()
                self.expect("]")
                expr = Index(expr, index)
            else:
                return expr

    def arguments(self) -> tuple[Expr, ...]:
        self.expect("(")
        args: list[Expr] = []
        if not self.at(")"):
            args.append(self.expression())
            while self.at(","):
                self.take()
                args.append(self.expression())
        self.expect(")")
        return tuple(args)

    def term(self) -> Expr:
        kind, value = self.take()
        if kind == "str":
            return Literal(_unescape(value[1:-1]))
        if kind == "num":
            return Literal(Decimal(value) if "." in value else int(value))
        if kind == "date":
            raise Unsupported("date literals")
        if kind == "var":
            return Var(value[1:].strip("'`"))
        if kind == "dollar":
            return Var(value[1:])
        if kind == "bq":
            return self.name_term(value.strip("`"))
        if kind == "id":
            if value in ("true", "false"):
                return Literal(value == "true")
            return self.name_term(value)
        if value == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if value == "{":
            self.expect("}")
            return Empty()
        raise Unsupported(f"unexpected {value!r}")

    def name_term(self, name: str) -> Expr:
        if self.at("("):
            return Call(None, name, self.arguments())
        return Ident(name)


def parse(text: str) -> Expr:
    """Parse a FHIRPath expression; raises :class:`Unsupported` for syntax outside the subset."""
    parser = _Parser(text)
    expr = parser.expression()
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()!r} after the expression")
    return expr

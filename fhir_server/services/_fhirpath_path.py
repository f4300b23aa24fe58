"""The FHIRPath subset a FHIRPath Patch ``path`` may use, parsed into navigation steps.

Supported: member navigation (``Patient.name.given``, with an optional leading type name and `` `delimited` ``
identifiers), ``[n]`` indexers, and the functions ``where(criteria)`` (criteria: any FHIRPath fhirpathpy can
evaluate), ``first()``, ``last()``, ``ofType(Type)`` and ``extension('url')``.  Whitespace between tokens is
allowed.  Anything else - other functions, operators, ``resolve()`` - is rejected as a malformed patch (400): a
patch path must name locations in the resource being patched, not compute values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_server.errors import InvalidRequest
from fhir_server.services._fhirpath_criteria import Criteria, compile_criteria

__all__ = ["ExtensionCall", "First", "Index", "Last", "Member", "OfType", "Step", "Where", "parse_path"]


@dataclass(frozen=True)
class Member:
    name: str


@dataclass(frozen=True)
class Index:
    position: int


@dataclass(frozen=True)
class Where:
    criteria: Criteria


@dataclass(frozen=True)
class First:
    pass


@dataclass(frozen=True)
class Last:
    pass


@dataclass(frozen=True)
class OfType:
    type_name: str


@dataclass(frozen=True)
class ExtensionCall:
    url: str


Step = Member | Index | Where | First | Last | OfType | ExtensionCall

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_INTEGER = re.compile(r"\s*(0|[1-9][0-9]*)\s*")
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def parse_path(text: str, where: str) -> tuple[Step, ...]:
    """Parse a patch path; ``where`` is the expression an error names (the ``path`` part)."""
    return _Parser(text, where).parse()


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.pos = 0

    def parse(self) -> tuple[Step, ...]:
        steps = [self._invocation()]
        while self._skip_space() < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == ".":
                steps.append(self._invocation())
            elif char == "[":
                steps.append(self._indexer())
            else:
                raise self._error(f"unexpected {char!r} at column {self.pos}")
        return tuple(steps)

    def _invocation(self) -> Step:
        name = self._identifier()
        if self._skip_space() < len(self.text) and self.text[self.pos] == "(":
            self.pos += 1
            return self._function(name, self._arguments())
        return Member(name)

    def _identifier(self) -> str:
        self._skip_space()
        if self.text.startswith("`", self.pos):
            end = self.text.find("`", self.pos + 1)
            if end < 0:
                raise self._error("unterminated `delimited identifier`")
            name, self.pos = self.text[self.pos + 1 : end], end + 1
            return name
        match = _IDENTIFIER.match(self.text, self.pos)
        if not match:
            raise self._error(f"expected an element name at column {self.pos + 1}")
        self.pos = match.end()
        return match.group()

    def _indexer(self) -> Index:
        end = self.text.find("]", self.pos)
        match = _INTEGER.fullmatch(self.text, self.pos, end) if end >= 0 else None
        if not match:
            raise self._error(f"expected a non-negative integer index at column {self.pos + 1}")
        self.pos = end + 1
        return Index(int(match.group(1)))

    def _arguments(self) -> str:
        """The raw text up to the matching ``)``, skipping over quoted strings and nested parentheses."""
        depth, start, quote = 0, self.pos, ""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if quote:
                if char == "\\":
                    self.pos += 1
                elif char == quote:
                    quote = ""
            elif char in "'`\"":
                quote = char
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    return self.text[start : self.pos - 1].strip()
                depth -= 1
        raise self._error("unbalanced parentheses")

    def _function(self, name: str, argument: str) -> Step:
        if name == "where" and argument:
            return Where(compile_criteria(argument, self.where))
        if name in ("first", "last") and not argument:
            return First() if name == "first" else Last()
        if name == "ofType" and _TYPE_NAME.fullmatch(argument):
            return OfType(argument)
        if name == "extension":
            url = _STRING.fullmatch(argument)
            if url:
                return ExtensionCall(_unescape(url.group(1)))
        if name in ("where", "first", "last", "ofType", "extension"):
            raise self._error(f"wrong arguments for {name}({argument})")
        raise self._error(f"function {name}() is not supported in a FHIRPath Patch path")

    def _skip_space(self) -> int:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos

    def _error(self, reason: str) -> InvalidRequest:
        return InvalidRequest(f"invalid FHIRPath Patch path {self.text!r}: {reason}", expression=self.where)


def _unescape(body: str) -> str:
    """Undo FHIRPath string escapes (``\\'``, ``\\n``, ``\\u0041``, ...)."""
    return _ESCAPE.sub(_replace_escape, body)


def _replace_escape(match: re.Match[str]) -> str:
    code = match.group(1)
    return chr(int(code[1:], 16)) if len(code) == 5 else _ESCAPES.get(code, code)

"""Parse search criteria (a query string) into the query model.

This slice understands what conditional interactions need: ``_id`` and token parameters the store indexes
(``identifier``), with OR lists (``,``) and AND repeats, and the escapes ``\\,`` ``\\|`` ``\\$`` ``\\\\``.
Any other parameter is refused with an error naming it, never ignored: ignoring a criterion would widen a
conditional update or delete to resources the client did not mean.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from fhir_server.errors import InvalidRequest, NotSupported
from fhir_server.search.model import Clause, SearchQuery, TokenValue

# parameters that never restrict the match set and are allowed (and ignored) in criteria
_RESULT_PARAMS = {"_format", "_pretty"}


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash; keep escapes for later unescaping."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",|$\\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_token(raw: str) -> TokenValue:
    pieces = split_unescaped(raw, "|")
    if len(pieces) == 1:
        return TokenValue(None, unescape(pieces[0]) or None)
    if len(pieces) == 2:
        system, code = (unescape(p) for p in pieces)
        return TokenValue(system, code or None)
    raise InvalidRequest(f"token value {raw!r} has more than one unescaped '|'")


def parse_criteria(
    resource_type: str, query_string: str, supports: Callable[[str, str], bool]
) -> SearchQuery:
    """Criteria of a conditional interaction → query; unknown or unsupported parameters are errors."""
    clauses: list[Clause] = []
    for name, raw in parse_qsl(query_string, keep_blank_values=True):
        if name in _RESULT_PARAMS:
            continue
        param, _, modifier = name.partition(":")
        if modifier:
            raise NotSupported(
                f"search modifier ':{modifier}' is not supported in conditional criteria", expression=name
            )
        if raw == "":
            raise InvalidRequest(f"search parameter {name!r} has no value", expression=name)
        values = split_unescaped(raw, ",")
        if param == "_id":
            clauses.append(Clause("_id", "id", tuple(TokenValue(None, unescape(v)) for v in values)))
        elif supports(resource_type, param):
            clauses.append(Clause(param, "token", tuple(parse_token(v) for v in values)))
        else:
            raise NotSupported(
                f"search parameter {param!r} is not supported for {resource_type} in conditional criteria "
                "(supported: _id, identifier)",
                expression=param,
            )
    if not clauses:
        raise InvalidRequest("conditional interactions need search criteria")
    return SearchQuery(resource_type, tuple(clauses))

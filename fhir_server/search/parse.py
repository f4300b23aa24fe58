"""Parse a search query string into the query model (R4 search.html).

``parse_search`` understands every parameter type and modifier, prefixes, OR lists and escapes, chains to any
depth, nested ``_has``, the result parameters (``_sort``, ``_count``, ``_total``, ``_include``/``_revinclude``
with ``:iterate``, ``_summary``, ``_elements``, ``_contained``, ``_containedType``) and ``_type`` for system
searches.  Unknown or malformed parameters raise an error naming the parameter when ``strict``; otherwise they
are skipped with a warning issue, and only the applied parameters appear in ``SearchQuery.applied``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from fhir_server.errors import InvalidRequest, Issue
from fhir_server.indexing.extract import normalise_string
from fhir_server.search import values as v
from fhir_server.search.model import (
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    Has,
    Include,
    MissingValue,
    Not,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
    Total,
    UriValue,
    Value,
)
from fhir_server.search.registry import ParamDef, Registry

CONTROL = {
    "_sort", "_count", "_total", "_include", "_revinclude", "_summary", "_elements", "_contained",
    "_containedType", "_format", "_pretty", "_type",
}
SPECIAL = {"_id": "id", "_lastUpdated": "lastUpdated", "_list": "list", "_text": "text", "_content": "content"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "in", "not-in", "of-type", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"identifier", "missing"},
    "uri": {"above", "below", "missing"},
    "composite": {"missing"},
    "id": {"not", "missing"},
    "lastUpdated": {"missing"},
    "list": set(),
    "text": set(),
    "content": set(),
    "near": set(),
}
SORTABLE = {"string", "token", "date", "number", "quantity", "reference", "uri", "id", "lastUpdated"}
SUMMARY = {"true", "false", "text", "data", "count"}


class SearchParamError(InvalidRequest):
    """A search parameter that is unknown or malformed; ``expression`` names it."""


@dataclass
class Parsed:
    query: SearchQuery
    warnings: list[Issue] = field(default_factory=list)


def _fail(name: str, message: str) -> SearchParamError:
    return SearchParamError(message, expression=name)


@dataclass
class _Parser:
    registry: Registry
    base_urls: Sequence[str]
    canonicalise: v.CanonicalFn | None

    # -- criteria -------------------------------------------------------------------------------------------

    def criterion(self, resource_type: str, name: str, raw: str) -> Criterion:
        if name.startswith("_has:"):
            return self._has(resource_type, name, raw)
        head, dot, rest = name.partition(".")
        if dot:
            return self._chain(resource_type, name, head, rest, raw)
        code, _, modifier = name.partition(":")
        if code in SPECIAL:
            return self._clause(name, code, SPECIAL[code], (), modifier or None, raw, resource_type)
        param = self.registry.lookup(resource_type, code)
        if param is None:
            raise _fail(name, f"unknown search parameter {code!r} for {resource_type}")
        ptype = "near" if param.type == "special" and code == "near" else param.type
        return self._clause(name, code, ptype, param.targets, modifier or None, raw, resource_type, param)

    def _has(self, resource_type: str, name: str, raw: str) -> Criterion:
        parts = name.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise _fail(name, "_has needs the form _has:Type:reference-param:search-param")
        _, source_type, ref_code, rest = parts
        if not self.registry.is_resource_type(source_type):
            raise _fail(name, f"_has: {source_type!r} is not a resource type")
        ref = self.registry.lookup(source_type, ref_code)
        if ref is None or ref.type != "reference":
            raise _fail(name, f"_has: {ref_code!r} is not a reference parameter of {source_type}")
        if ref.targets and resource_type not in ref.targets and "Resource" not in ref.targets:
            raise _fail(name, f"_has: {source_type}.{ref_code} cannot refer to {resource_type}")
        return Has(source_type, ref_code, self.criterion(source_type, rest, raw))

    def _chain(self, resource_type: str, name: str, head: str, rest: str, raw: str) -> Criterion:
        code, _, type_modifier = head.partition(":")
        param = self.registry.lookup(resource_type, code)
        if param is None or param.type != "reference":
            raise _fail(name, f"chained parameter {code!r} is not a reference parameter of {resource_type}")
        targets: tuple[str, ...] = param.targets
        if type_modifier:
            if not self.registry.is_resource_type(type_modifier):
                raise _fail(name, f"{type_modifier!r} is not a resource type")
            targets = (type_modifier,)
        inner_code = rest.split(".", 1)[0].split(":", 1)[0]
        usable = tuple(
            t for t in targets if inner_code.startswith("_has") or inner_code in SPECIAL
            or self.registry.lookup(t, inner_code) is not None
        )
        if not usable:
            raise _fail(name, f"no target type of {resource_type}.{code} has a search parameter {inner_code!r}")
        inner = self.criterion(usable[0], rest, raw)
        return Chain(code, usable, inner)

    def _clause(
        self,
        name: str,
        code: str,
        ptype: str,
        targets: tuple[str, ...],
        modifier: str | None,
        raw: str,
        resource_type: str,
        param: ParamDef | None = None,
    ) -> Criterion:
        type_modifier = ptype == "reference" and modifier is not None and self.registry.is_resource_type(modifier)
        if modifier is not None and modifier not in MODIFIERS.get(ptype, set()) and not type_modifier:
            raise _fail(name, f"modifier :{modifier} is not supported on {ptype} parameter {code!r}")
        if raw == "":
            raise _fail(name, f"search parameter {name!r} has no value")
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise _fail(name, ":missing takes true or false")
            return Clause(code, ptype, (MissingValue(raw == "true"),), "missing")  # type: ignore[arg-type]
        try:
            parsed = tuple(
                self._value(ptype, modifier, targets, part, param) for part in v.split_unescaped(raw, ",")
            )
        except v.BadValue as exc:
            raise _fail(name, f"{name}: {exc}") from exc
        components = self._component_types(param) if ptype == "composite" and param is not None else ()
        if ptype == "reference" and modifier is not None and modifier != "identifier":
            modifier = None  # a type modifier is folded into the values
        if modifier == "not":
            return Not(Clause(code, ptype, parsed, None, components))  # type: ignore[arg-type]
        return Clause(code, ptype, parsed, modifier, components)  # type: ignore[arg-type]

    def _component_types(self, param: ParamDef) -> tuple[str, ...]:
        types = []
        for url, _ in param.components:
            component = self.registry.by_url(url)
            if component is None:
                raise v.BadValue(f"composite {param.code!r} has an unknown component {url}")
            types.append(component.type)
        return tuple(types)

    def _value(
        self, ptype: str, modifier: str | None, targets: tuple[str, ...], raw: str, param: ParamDef | None
    ) -> Value:
        match ptype:
            case "string" | "text" | "content":
                return v.string_value(raw)
            case "token":
                if modifier == "of-type":
                    return v.of_type_value(raw)
                if modifier == "text":
                    text = v.unescape(raw)
                    return TokenValue(None, normalise_string(text))
                if modifier in ("in", "not-in"):
                    return UriValue(v.unescape(raw))
                return v.token_value(raw)
            case "id" | "list":
                return TokenValue(None, v.unescape(raw))
            case "date" | "lastUpdated":
                return v.date_value(raw)
            case "number":
                return v.number_value(raw)
            case "quantity":
                return v.quantity_value(raw, self.canonicalise)
            case "reference":
                return self._reference(modifier, targets, raw)
            case "uri":
                return UriValue(v.unescape(raw))
            case "near":
                return v.near_value(raw)
            case "composite":
                assert param is not None
                types = self._component_types(param)
                parts = v.split_unescaped(raw, "$")
                if len(parts) != len(types):
                    raise v.BadValue(f"composite value needs {len(types)} parts separated by '$'")
                return CompositeValue(tuple(self._value(t, None, (), p, None) for t, p in zip(types, parts,
                                                                                                strict=True)))
        raise v.BadValue(f"unsupported parameter type {ptype}")

    def _reference(self, modifier: str | None, targets: tuple[str, ...], raw: str) -> ReferenceValue:
        text = v.unescape(raw)
        if modifier == "identifier":
            token = v.token_value(raw)
            return ReferenceValue(identifier_system=token.system, identifier_value=token.code)
        type_restriction = modifier if modifier and modifier != "identifier" else None
        for base in self.base_urls:
            if text.startswith(base.rstrip("/") + "/"):
                text = text[len(base.rstrip("/")) + 1 :]
                break
        if "://" in text or text.startswith("urn:"):
            url, _, version = text.partition("|")
            return ReferenceValue(url=url, version=version or None)
        pieces = text.split("/")
        if len(pieces) in (2, 4) and self.registry.is_resource_type(pieces[0]):
            if len(pieces) == 4 and pieces[2] != "_history":
                raise v.BadValue(f"{raw!r} is not a reference")
            if type_restriction and pieces[0] != type_restriction:
                raise v.BadValue(f"{raw!r} is not a {type_restriction} reference")
            return ReferenceValue(type=pieces[0], id=pieces[1], version=pieces[3] if len(pieces) == 4 else None)
        if len(pieces) == 1:
            if type_restriction:
                return ReferenceValue(type=type_restriction, id=text)
            concrete = [t for t in targets if t != "Resource"]
            return ReferenceValue(type=concrete[0] if len(concrete) == 1 and len(targets) == 1 else None, id=text)
        raise v.BadValue(f"{raw!r} is not a reference (Type/id, id or an absolute URL)")

    # -- result parameters ------------------------------------------------------------------------------------

    def sort(self, resource_type: str | None, raw: str) -> tuple[SortKey, ...]:
        keys = []
        for item in raw.split(","):
            item = item.strip()
            descending = item.startswith("-")
            code = item[1:] if descending else item
            if code in ("_id", "_lastUpdated"):
                keys.append(SortKey(code, SPECIAL[code], descending))  # type: ignore[arg-type]
                continue
            param = self.registry.lookup(resource_type, code) if resource_type else None
            if param is None or param.type not in SORTABLE:
                raise _fail("_sort", f"cannot sort {resource_type or 'a system search'} by {code!r}")
            keys.append(SortKey(code, param.type, descending))  # type: ignore[arg-type]
        return tuple(keys)

    def include(self, name: str, raw: str, reverse: bool) -> Include:
        _, _, modifier = name.partition(":")
        if modifier not in ("", "iterate", "recurse"):
            raise _fail(name, f"{name}: unknown modifier")
        iterate = modifier in ("iterate", "recurse")
        if raw == "*":
            return Include("*", "*", None, iterate, reverse)
        parts = raw.split(":")
        if len(parts) not in (2, 3):
            raise _fail(name, f"{name} takes Type:param[:TargetType] or *")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.registry.is_resource_type(source):
            raise _fail(name, f"{source!r} is not a resource type")
        if code != "*":
            param = self.registry.lookup(source, code)
            if param is None or param.type != "reference":
                raise _fail(name, f"{code!r} is not a reference parameter of {source}")
        if target is not None and not self.registry.is_resource_type(target):
            raise _fail(name, f"{target!r} is not a resource type")
        return Include(source, code, target, iterate, reverse)


def parse_search(
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    registry: Registry,
    *,
    strict: bool = False,
    max_count: int = 1000,
    base_urls: Sequence[str] = (),
    canonicalise: v.CanonicalFn | None = None,
) -> Parsed:
    parser = _Parser(registry, base_urls, canonicalise)
    warnings: list[Issue] = []
    criteria: list[Criterion] = []
    applied: list[tuple[str, str]] = []
    options: dict[str, object] = {}
    includes: list[Include] = []
    types: tuple[str, ...] = ()

    def skip(exc: SearchParamError) -> None:
        if strict:
            raise exc
        warnings.append(Issue("warning", "not-supported", f"ignored: {exc.diagnostics}", exc.issues[0].expression))

    for name, raw in params:
        base = name.split(":", 1)[0]
        try:
            if base in CONTROL:
                _control(parser, resource_type, name, base, raw, options, includes, max_count)
                if base == "_type":
                    types = _types(registry, raw)
                if base not in ("_format", "_pretty"):
                    applied.append((name, raw))
                continue
            if resource_type is None and not name.startswith(("_id", "_lastUpdated")) and base not in SPECIAL:
                criteria.append(_system_criterion(parser, types, name, raw))
            else:
                criteria.append(parser.criterion(resource_type or "Resource", name, raw))
            applied.append((name, raw))
        except SearchParamError as exc:
            skip(exc)
    query = SearchQuery(
        resource_type=resource_type,
        criteria=tuple(criteria),
        types=types,
        sort=options.get("sort", ()),  # type: ignore[arg-type]
        count=options.get("count"),  # type: ignore[arg-type]
        total=options.get("total"),  # type: ignore[arg-type]
        includes=tuple(includes),
        summary=options.get("summary"),  # type: ignore[arg-type]
        elements=options.get("elements", ()),  # type: ignore[arg-type]
        contained=options.get("contained"),  # type: ignore[arg-type]
        contained_type=options.get("contained_type"),  # type: ignore[arg-type]
        applied=tuple(applied),
    )
    return Parsed(query, warnings)


def _types(registry: Registry, raw: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    for t in types:
        if not registry.is_resource_type(t):
            raise _fail("_type", f"{t!r} is not a resource type")
    return types


def _system_criterion(parser: _Parser, types: tuple[str, ...], name: str, raw: str) -> Criterion:
    """A criterion of a system search applies to the ``_type`` types (it must mean the same on all of them)."""
    if not types:
        raise _fail(name, f"system-level search by {name!r} needs _type (only _id, _lastUpdated and the "
                          "Resource parameters apply to every type)")
    return parser.criterion(types[0], name, raw)


def _control(
    parser: _Parser,
    resource_type: str | None,
    name: str,
    base: str,
    raw: str,
    options: dict[str, object],
    includes: list[Include],
    max_count: int,
) -> None:
    if base == "_count":
        if not raw.isdigit():
            raise _fail(name, "_count must be a non-negative integer")
        options["count"] = min(int(raw), max_count)
    elif base == "_sort":
        options["sort"] = parser.sort(resource_type, raw)
    elif base == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise _fail(name, "_total must be none, estimate or accurate")
        total: Total = raw  # type: ignore[assignment]
        options["total"] = total
    elif base in ("_include", "_revinclude"):
        includes.append(parser.include(name, raw, base == "_revinclude"))
    elif base == "_summary":
        if raw not in SUMMARY:
            raise _fail(name, f"_summary must be one of {', '.join(sorted(SUMMARY))}")
        options["summary"] = raw
    elif base == "_elements":
        options["elements"] = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif base == "_contained":
        if raw not in ("true", "false", "both"):
            raise _fail(name, "_contained must be true, false or both")
        options["contained"] = raw
    elif base == "_containedType":
        if raw not in ("container", "contained"):
            raise _fail(name, "_containedType must be container or contained")
        options["contained_type"] = raw


def parse_query_string(query_string: str) -> list[tuple[str, str]]:
    """``parse_qsl(query_string, keep_blank_values=True)``, decoding only the names and values that need it."""
    pairs = []
    for part in query_string.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_decoded(name), _decoded(value)))
    return pairs


def _decoded(text: str) -> str:
    if "%" in text or "+" in text:
        return unquote(text.replace("+", " "))
    return text


def parse_criteria(
    resource_type: str, query_string: str, registry: Registry, base_urls: Sequence[str] = (),
    canonicalise: v.CanonicalFn | None = None,
) -> SearchQuery:
    """Criteria of a conditional interaction: any search, strictly parsed; result parameters are not allowed
    (they do not restrict the match) and at least one criterion is required."""
    params = [(k, val) for k, val in parse_query_string(query_string) if k not in ("_format", "_pretty")]
    for name, _ in params:
        if name.split(":", 1)[0] in CONTROL:
            raise _fail(name, f"{name} has no meaning in the criteria of a conditional interaction")
    parsed = parse_search(resource_type, params, registry, strict=True, base_urls=base_urls,
                          canonicalise=canonicalise)
    if not parsed.query.criteria:
        raise InvalidRequest("conditional interactions need search criteria")
    return parsed.query

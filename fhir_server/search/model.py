"""The backend-neutral query model.

A :class:`SearchQuery` is an AND of criteria; each :class:`Clause` is an OR of typed values of one search
parameter.  :class:`Chain` and :class:`Has` nest a criterion that applies to other resources.  Backends compile the
model (SQL, Mongo filters); the in-memory matcher evaluates it against one resource's index entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PREFIXES: tuple[Prefix, ...] = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class StringValue:
    text: str  # unescaped, as given (for :exact)
    norm: str  # normalised like StringEntry.norm


@dataclass(frozen=True)
class TokenValue:
    """``system|code`` with the spec's forms: ``code`` (system None: any), ``|code`` (system ""), ``system|``
    (code None).  For ``:of-type`` the value is ``type_system|type_code|code``; for ``:text`` ``code`` holds
    the normalised text."""

    system: str | None
    code: str | None
    type_system: str | None = None
    type_code: str | None = None


@dataclass(frozen=True)
class DateValue:
    prefix: Prefix
    low: float  # the search value's own period [low, high), epoch seconds
    high: float


@dataclass(frozen=True)
class NumberValue:
    prefix: Prefix
    value: Decimal
    low: float  # implicit precision range of the search value
    high: float


@dataclass(frozen=True)
class QuantityValue:
    prefix: Prefix
    value: Decimal
    low: float
    high: float
    system: str | None  # None: any system
    code: str | None  # None: any unit (matched on code or unit text)
    canonical_code: str | None = None
    canonical_value: float | None = None
    canonical_low: float | None = None
    canonical_high: float | None = None


@dataclass(frozen=True)
class ReferenceValue:
    """A local target (``type``/``id``), an absolute or canonical ``url`` (with optional ``version``), or with
    ``:identifier`` an identifier."""

    type: str | None = None
    id: str | None = None
    url: str | None = None
    version: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True)
class UriValue:
    uri: str


@dataclass(frozen=True)
class CompositeValue:
    parts: tuple[Value, ...]  # one value per component, in component order


@dataclass(frozen=True)
class NearValue:
    """``near=lat|lon|distance|units``: within ``distance_km`` of the point (great-circle distance)."""

    latitude: float
    longitude: float
    distance_km: float


@dataclass(frozen=True)
class MissingValue:
    missing: bool


Value = (
    StringValue | TokenValue | DateValue | NumberValue | QuantityValue | ReferenceValue | UriValue | CompositeValue
    | MissingValue | NearValue
)

ParamType = Literal[
    "string", "token", "date", "number", "quantity", "reference", "uri", "composite",
    "id", "lastUpdated", "list", "text", "content", "near",
]


@dataclass(frozen=True)
class Clause:
    """One parameter occurrence: matches when any value matches (OR).

    ``type`` is the search parameter type, or one of the specials: ``id`` (``_id``, token values on the resource
    id), ``lastUpdated`` (date values on ``meta.lastUpdated``), ``list`` (``_list``: ids of List resources),
    ``text``/``content`` (``_text``/``_content``: string values).
    """

    param: str
    type: ParamType
    values: tuple[Value, ...]
    modifier: str | None = None
    components: tuple[str, ...] = ()  # composite: the component params' types, in order


@dataclass(frozen=True)
class Chain:
    """``subject:Patient.name=x``: the reference ``param`` points at a resource of ``target_types`` matching
    ``inner``."""

    param: str
    target_types: tuple[str, ...]
    inner: Criterion


@dataclass(frozen=True)
class Has:
    """``_has:Observation:patient:code=x``: some ``source_type`` resource whose ``ref_param`` refers to this one
    matches ``inner``."""

    source_type: str
    ref_param: str
    inner: Criterion


@dataclass(frozen=True)
class Not:
    """A negated criterion (``:not`` on tokens is modelled as Not of the positive clause over the same
    parameter: a resource matches when none of its values match)."""

    inner: Criterion


@dataclass(frozen=True)
class AnyOf:
    """Matches when any of several criteria matches (compartment membership: any of the compartment's
    parameters refers to the compartment owner)."""

    criteria: tuple[Criterion, ...]


Criterion = Clause | Chain | Has | Not | AnyOf


@dataclass(frozen=True)
class SortKey:
    param: str
    type: ParamType
    descending: bool = False


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or, with ``reverse``, ``_revinclude``; ``param == "*"`` for all."""

    source_type: str
    param: str
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


Total = Literal["none", "estimate", "accurate"]


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search.  ``resource_type`` is None for a system-level search over ``types`` (empty: all)."""

    resource_type: str | None
    criteria: tuple[Criterion, ...] = ()
    types: tuple[str, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    total: Total | None = None
    includes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    contained: str | None = None  # false | true | both
    contained_type: str | None = None  # container | contained
    applied: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # for the self link

    def describe(self) -> str:
        from urllib.parse import urlencode

        qs = urlencode(list(self.applied))
        return f"{self.resource_type or ''}?{qs}"

"""Typed, normalised search index entries: what :mod:`fhir_server.indexing` extracts from a resource at write
time, what every backend stores beside the resource, and what the in-memory matcher compares against.

Conventions shared by every producer and consumer:

* ``param`` is the search parameter ``code`` (``name``, ``identifier``, ``code-value-quantity``).
* Strings are compared on ``norm``: Unicode NFKD, accents (combining marks) removed, case-folded, whitespace
  runs collapsed to one space, trimmed.  ``exact`` keeps the original text for ``:exact``.
* Date entries are intervals ``[low, high)`` in epoch seconds (UTC), from the precision of the value
  (``2020`` → the whole year); an open end is ``-inf``/``+inf``.  Values without a time zone are taken as UTC.
* Numbers and quantities carry their value and the implicit precision range ``[low, high)`` (``100`` →
  ``[99.5, 100.5)``, ``1e2`` → ``[50, 150)``, per search.html#number).  Quantities whose UCUM unit converts exactly
  to a canonical unit also carry the canonical code and range.
* References are stored in every form that can match: ``type``/``id`` for a literal reference resolved against the
  server base (relative, or absolute with the server's base), ``url`` for absolute and canonical references (with
  ``|version`` stripped into ``version``), ``identifier_system``/``identifier_value`` for ``Reference.identifier``
  (``:identifier``).
* A composite search parameter produces :class:`CompositeEntry` items, one per element the composite expression
  selects, each holding one entry list per component (the combinations of a component's values are matched
  within the same element only).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StringEntry:
    param: str
    norm: str
    exact: str


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """``system|code``; ``text`` is the normalised display/text used by ``:text``; ``type_system``/``type_code``
    carry ``Identifier.type`` for ``:of-type``."""

    param: str
    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None
    type_code: str | None = None


@dataclass(frozen=True, slots=True)
class DateEntry:
    param: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class NumberEntry:
    param: str
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityEntry:
    param: str
    value: float
    low: float
    high: float
    system: str | None
    code: str | None
    unit: str | None
    canonical_code: str | None = None
    canonical_value: float | None = None
    canonical_low: float | None = None
    canonical_high: float | None = None


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    param: str
    type: str | None = None
    id: str | None = None
    version: str | None = None
    url: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriEntry:
    param: str
    uri: str


Entry = StringEntry | TokenEntry | DateEntry | NumberEntry | QuantityEntry | ReferenceEntry | UriEntry


@dataclass(frozen=True, slots=True)
class CompositeEntry:
    param: str
    components: tuple[tuple[Entry, ...], ...]  # one tuple of entries per component, from the same element


@dataclass(slots=True)
class IndexEntries:
    """Everything indexed for one resource version."""

    strings: list[StringEntry] = field(default_factory=list)
    tokens: list[TokenEntry] = field(default_factory=list)
    dates: list[DateEntry] = field(default_factory=list)
    numbers: list[NumberEntry] = field(default_factory=list)
    quantities: list[QuantityEntry] = field(default_factory=list)
    references: list[ReferenceEntry] = field(default_factory=list)
    uris: list[UriEntry] = field(default_factory=list)
    composites: list[CompositeEntry] = field(default_factory=list)
    narrative: str = ""  # the narrative's text, for _text (full-text)
    content: str = ""  # every string value of the resource, for _content (full-text)

    def add(self, entry: Entry | CompositeEntry) -> None:
        match entry:
            case StringEntry():
                self.strings.append(entry)
            case TokenEntry():
                self.tokens.append(entry)
            case DateEntry():
                self.dates.append(entry)
            case NumberEntry():
                self.numbers.append(entry)
            case QuantityEntry():
                self.quantities.append(entry)
            case ReferenceEntry():
                self.references.append(entry)
            case UriEntry():
                self.uris.append(entry)
            case CompositeEntry():
                self.composites.append(entry)

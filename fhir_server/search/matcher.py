"""The in-memory matcher: the query model evaluated against one resource's index entries.

It is the reference answer of the property tests (every backend's result set must equal it) and it serves
conditional operations and subscriptions.  It implements the semantics the SQLite compiler
(:mod:`fhir_server.storage.sqlite._search_sql`) gives each criterion, with the prefixes of
:mod:`fhir_server.search.compare`:

* a :class:`~fhir_server.search.model.Clause` matches when some value (OR) matches some entry of the parameter;
  absent entry fields compare as ``""`` (the SQLite index stores them so: ``|code`` finds codes without a system);
* string: starts-with on the normalised form, ``:exact`` on the original text, ``:contains`` a substring of the
  normalised form; token: ``code``, ``system|code``, ``|code``, ``system|``, ``:text`` (starts-with on the
  normalised display/text), ``:of-type``; ``:not`` and ``:not-in`` arrive as :class:`Not` (``:in`` must be resolved
  to codes first, as the search service does);
* date: interval against interval; number and quantity: the entry's value (a point) against the search value and
  its implicit precision range; a quantity whose unit has a canonical form is compared in canonical units with the
  entries that have one, and on its own code or unit (and system) with the entries that have none;
* reference: ``Type/id``, ``id``, absolute/canonical ``url`` (``|version``), ``:identifier``; uri: equality,
  ``:below`` (the entry starts with the value, case-sensitive), ``:above`` (the value starts with the entry);
* composite: every part matched by the entries of its component *within the same element*;
* ``_id``, ``_lastUpdated`` (a point: ``[last_updated, last_updated]``), ``_list`` (through the resolver);
  ``:missing`` on every type (``_id`` and ``_lastUpdated`` are never missing);
* ``_text``/``_content``: every word of the normalised value must start a word of ``entries.narrative`` /
  ``entries.content``, words being what SQLite FTS5's ``unicode61 remove_diacritics 2`` tokenizer makes of the text
  and of the value's word (a value word it splits, ``o'brien``, must match consecutive words; one it reduces to
  nothing, ``-``, matches nothing) — see :func:`fulltext_tokens`;
* :class:`Chain`, :class:`Has` and ``_list`` need a :class:`Resolver`; :class:`Not` and :class:`AnyOf` combine.

The resource type of the candidate is not checked: callers pass candidates of the searched type.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from fhir_server.indexing.entries import (
    CompositeEntry,
    DateEntry,
    Entry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.search.compare import date_matches, number_matches, string_prefix_bounds
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    MissingValue,
    Not,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

__all__ = ["Candidate", "InMemoryResolver", "MatcherError", "Resolver", "fulltext_tokens", "matches"]


class MatcherError(ValueError):
    """A criterion the matcher cannot evaluate as given (unresolved ``:in``, a chain without a resolver)."""


@dataclass(frozen=True)
class Candidate:
    """One current resource version as the matcher sees it: identity, ``meta.lastUpdated`` (epoch seconds) and
    the index entries extracted at write time (with ``narrative``/``content`` for ``_text``/``_content``)."""

    resource_type: str
    id: str
    last_updated: float
    entries: IndexEntries


class Resolver(Protocol):
    """What chains, ``_has`` and ``_list`` need from the rest of the store."""

    def referenced(self, candidate: Candidate, param: str, target_types: Sequence[str]) -> Iterable[Candidate]:
        """The existing resources of ``target_types`` that ``candidate``'s reference parameter ``param`` points
        at (by type and id)."""
        ...

    def referring(self, candidate: Candidate, source_type: str, ref_param: str) -> Iterable[Candidate]:
        """The existing ``source_type`` resources whose reference parameter ``ref_param`` points at
        ``candidate``."""
        ...

    def list_members(self, list_id: str) -> Iterable[tuple[str, str]]:
        """``(type, id)`` of each ``List.entry.item`` of the existing List ``list_id``."""
        ...


def matches(
    criteria: Sequence[Criterion], candidate: Candidate, resolver: Resolver | None = None, *, now: float | None = None
) -> bool:
    """True when ``candidate`` satisfies every criterion (AND).  ``now`` (epoch seconds) fixes the moment the
    ``ap`` prefix of dates is relative to (default: the current time)."""
    evaluator = _Evaluator(resolver, now)
    return all(evaluator.criterion(c, candidate) for c in criteria)


# -- criteria -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Evaluator:
    resolver: Resolver | None
    now: float | None

    def criterion(self, c: Criterion, candidate: Candidate) -> bool:
        match c:
            case Clause():
                return self.clause(c, candidate)
            case Not():
                return not self.criterion(c.inner, candidate)
            case AnyOf():
                return any(self.criterion(inner, candidate) for inner in c.criteria)
            case Chain():
                targets = self._resolver().referenced(candidate, c.param, c.target_types)
                return any(self.criterion(c.inner, target) for target in targets)
            case Has():
                sources = self._resolver().referring(candidate, c.source_type, c.ref_param)
                return any(self.criterion(c.inner, source) for source in sources)
        raise TypeError(f"not a criterion: {c!r}")

    def _resolver(self) -> Resolver:
        if self.resolver is None:
            raise MatcherError("chained, _has and _list criteria need a resolver")
        return self.resolver

    def clause(self, c: Clause, candidate: Candidate) -> bool:
        if c.modifier == "missing":
            return _missing(c, candidate)
        match c.type:
            case "id":
                return candidate.id in _codes(c)
            case "lastUpdated":
                lu = candidate.last_updated
                return any(date_matches(v.prefix, lu, lu, v.low, v.high, self.now) for v in _dates(c))
            case "list":
                return self._in_list(c, candidate)
            case "text" | "content":
                return _fulltext(c, candidate.entries)
            case "composite":
                return _composite(c, candidate.entries, self.now)
        test = _value_test(c.type, c.modifier, self.now)
        found = _entries(c.type, c.param, candidate.entries)
        return any(test(value, entry) for value in c.values for entry in found)

    def _in_list(self, c: Clause, candidate: Candidate) -> bool:
        me = (candidate.resource_type, candidate.id)
        resolver = self._resolver()
        return any(me in set(resolver.list_members(list_id)) for list_id in _codes(c))


def _codes(c: Clause) -> list[str]:
    return [v.code for v in c.values if isinstance(v, TokenValue) and v.code is not None]


def _dates(c: Clause) -> list[DateValue]:
    return [v for v in c.values if isinstance(v, DateValue)]


def _missing(c: Clause, candidate: Candidate) -> bool:
    """``:missing=true`` matches resources without an entry of the parameter, ``false`` those with one."""
    value = c.values[0]
    assert isinstance(value, MissingValue)
    if c.type in ("id", "lastUpdated"):
        present = True  # every stored resource has an id and a lastUpdated
    elif c.type == "composite":
        present = any(e.param == c.param for e in candidate.entries.composites)
    else:
        present = bool(_entries(c.type, c.param, candidate.entries))
    return present != value.missing


def _entries(ptype: str, param: str, entries: IndexEntries) -> list[Entry]:
    """The entries of ``param`` in the list a parameter of type ``ptype`` is indexed in."""
    pool: Sequence[Entry] = _POOLS[ptype](entries) if ptype in _POOLS else ()
    return [e for e in pool if e.param == param]


_POOLS: dict[str, Callable[[IndexEntries], Sequence[Entry]]] = {
    "string": lambda e: e.strings,
    "token": lambda e: e.tokens,
    "date": lambda e: e.dates,
    "number": lambda e: e.numbers,
    "quantity": lambda e: e.quantities,
    "reference": lambda e: e.references,
    "uri": lambda e: e.uris,
}
_KIND: dict[str, type] = {
    "string": StringEntry, "token": TokenEntry, "date": DateEntry, "number": NumberEntry,
    "quantity": QuantityEntry, "reference": ReferenceEntry, "uri": UriEntry,
}  # fmt: skip


def _composite(c: Clause, entries: IndexEntries, now: float | None) -> bool:
    """Some element (one :class:`CompositeEntry`) matches every part of some value."""
    elements = [e for e in entries.composites if e.param == c.param and len(e.components) == len(c.components)]
    return any(
        _composite_element(c.components, value, element, now)
        for value in c.values
        if isinstance(value, CompositeValue)
        for element in elements
    )


def _composite_element(types: tuple[str, ...], value: CompositeValue, element: CompositeEntry,
                       now: float | None) -> bool:
    for ptype, part, component in zip(types, value.parts, element.components, strict=True):
        test = _value_test(ptype, None, now)
        kind = _KIND.get(ptype)
        if kind is None or not any(isinstance(entry, kind) and test(part, entry) for entry in component):
            return False
    return True


# -- values ---------------------------------------------------------------------------------------------------

ValueTest = Callable[[Value, Entry], bool]


def _value_test(ptype: str, modifier: str | None, now: float | None) -> ValueTest:
    """``(search value, entry) -> bool`` for one parameter type and modifier."""

    def test(value: Value, entry: Entry) -> bool:
        match value, entry:
            case StringValue(), StringEntry():
                return _string(modifier, value, entry)
            case TokenValue(), TokenEntry():
                return _token(modifier, value, entry)
            case DateValue(), DateEntry():
                return date_matches(value.prefix, entry.low, entry.high, value.low, value.high, now)
            case NumberValue(), NumberEntry():
                return number_matches(value.prefix, entry.value, float(value.value), value.low, value.high)
            case QuantityValue(), QuantityEntry():
                return _quantity(value, entry)
            case ReferenceValue(), ReferenceEntry():
                return _reference(value, entry)
            case UriValue(), UriEntry():
                return _uri(modifier, value, entry)
            case UriValue(), TokenEntry():
                raise MatcherError(f":{modifier} must be resolved to codes before matching")
        return False

    return test


def _string(modifier: str | None, v: StringValue, e: StringEntry) -> bool:
    if modifier == "exact":
        return e.exact == v.text
    if modifier == "contains":
        return v.norm in e.norm
    low, high = string_prefix_bounds(v.norm)
    return low <= e.norm < high


def _token(modifier: str | None, v: TokenValue, e: TokenEntry) -> bool:
    if modifier == "text":
        low, high = string_prefix_bounds(v.code or "")
        return low <= (e.text or "") < high
    if v.code is None and v.system is None:
        return False
    if modifier == "of-type" and (
        (e.type_system or "") != (v.type_system or "") or (e.type_code or "") != (v.type_code or "")
    ):
        return False
    if v.code is not None and (e.code or "") != v.code:
        return False
    return v.system is None or (e.system or "") == v.system


def _quantity(v: QuantityValue, e: QuantityEntry) -> bool:
    """Canonical units where both sides have them; otherwise the entry's own system, code or unit and value."""
    if v.canonical_code is not None and v.canonical_value is not None and e.canonical_code is not None:
        assert v.canonical_low is not None and v.canonical_high is not None
        return (
            e.canonical_code == v.canonical_code
            and e.canonical_value is not None
            and number_matches(v.prefix, e.canonical_value, v.canonical_value, v.canonical_low, v.canonical_high)
        )
    if v.system is not None and (e.system or "") != v.system:
        return False
    if v.code is not None and v.code not in ((e.code or ""), (e.unit or "")):
        return False
    return number_matches(v.prefix, e.value, float(v.value), v.low, v.high)


def _reference(v: ReferenceValue, e: ReferenceEntry) -> bool:
    if v.identifier_value is not None or v.identifier_system is not None:
        return _same(v.identifier_value, e.identifier_value) and _same(v.identifier_system, e.identifier_system)
    if v.url is not None:
        return (e.url or "") == v.url and _same(v.version, e.version)
    if v.id is None and v.type is None and v.version is None:
        return False
    return _same(v.id, e.id) and _same(v.type, e.type) and _same(v.version, e.version)


def _same(wanted: str | None, stored: str | None) -> bool:
    """A search field matches when it is not given, or equals the stored field (absent stored as ``""``)."""
    return wanted is None or (stored or "") == wanted


def _uri(modifier: str | None, v: UriValue, e: UriEntry) -> bool:
    if modifier == "below":
        return e.uri.startswith(v.uri)
    if modifier == "above":
        return v.uri.startswith(e.uri)
    return e.uri == v.uri


# -- _text / _content -----------------------------------------------------------------------------------------


def _fulltext(c: Clause, entries: IndexEntries) -> bool:
    """Some value whose every word is a prefix phrase of the narrative (``_text``) or content (``_content``)."""
    document = fulltext_tokens(entries.narrative if c.type == "text" else entries.content)
    for value in c.values:
        if not isinstance(value, StringValue):
            continue
        words = value.norm.split()
        if words and all(_prefix_phrase(fulltext_tokens(w.replace('"', "")), document) for w in words):
            return True
    return False


def _prefix_phrase(phrase: tuple[str, ...], document: tuple[str, ...]) -> bool:
    """FTS5 ``"phrase"*``: consecutive document tokens equal to the phrase, the last one only as a prefix.  An
    empty phrase matches nothing."""
    if not phrase:
        return False
    *head, last = phrase
    size = len(phrase)
    for i in range(len(document) - size + 1):
        if list(document[i : i + size - 1]) == head and document[i + size - 1].startswith(last):
            return True
    return False


# Combining marks that unicode61 with remove_diacritics treats as parts of a token (and folds away); every other
# mark is a separator.
_FTS_DIACRITICS = frozenset(
    chr(cp) for cp in (
        0x300, 0x301, 0x302, 0x303, 0x304, 0x306, 0x307, 0x308, 0x309, 0x30A, 0x30B, 0x30C, 0x30F, 0x311, 0x31B,
        0x323, 0x324, 0x325, 0x326, 0x327, 0x328, 0x32D, 0x32E, 0x330, 0x331,
    )
)  # fmt: skip
# Letters whose fold in SQLite's tables differs from the rule in _fts_fold.
_FTS_FOLD_EXCEPTIONS: Mapping[str, str] = {"\u01e0": "\u01e1", "\u01e1": "\u01e1", "\u037f": "\u037f"}
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=4096)
def _fts_fold(ch: str) -> str | None:
    """What unicode61 (``remove_diacritics 2``) makes of one character: None for a separator, else the folded
    text (possibly empty, for a diacritic)."""
    if ch in _FTS_DIACRITICS:
        return ""
    category = unicodedata.category(ch)
    if category[0] not in "LN" and category not in ("Co", "Cn"):
        return None
    if ch in _FTS_FOLD_EXCEPTIONS:
        return _FTS_FOLD_EXCEPTIONS[ch]
    folded = ch.casefold()
    if len(folded) != 1:  # simple case folding only: 'ß' stays, 'ẞ' → 'ß', 'İ' → 'I' (then 'i' below)
        folded = ch.lower() if len(ch.lower()) == 1 else ch
    decomposed = unicodedata.normalize("NFD", folded)
    if len(decomposed) > 1 and decomposed[0].isascii() and all(unicodedata.combining(m) for m in decomposed[1:]):
        return decomposed[0].lower()  # Latin letters lose their diacritics; other scripts keep them
    return folded


@lru_cache(maxsize=4096)
def fulltext_tokens(text: str) -> tuple[str, ...]:
    """The tokens SQLite FTS5's ``unicode61 remove_diacritics 2`` tokenizer makes of ``text``.

    Token characters are letters, numbers, private-use and unassigned code points and the common combining
    diacritics; everything else separates tokens.  Tokens are case-folded (simple folding) and Latin letters lose
    their diacritics (``Müller`` → ``muller``; ``Straße`` → ``straße``; ``Σίσυφος`` → ``σίσυφοσ``).  This agrees
    with SQLite 3.40's tables for Latin, Greek, Cyrillic (up to U+0527), general punctuation, CJK and Hangul
    (``tests/search`` checks it code point by code point); scripts added to Unicode after SQLite's tables can
    differ.
    """
    if text.isascii():
        return tuple(_ASCII_TOKEN.findall(text.lower()))
    tokens: list[str] = []
    current: list[str] = []
    for ch in text:
        folded = _fts_fold(ch)
        if folded is None:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(folded)
    if current:
        tokens.append("".join(current))
    return tuple(t for t in tokens if t)


# -- a resolver over a dict of candidates --------------------------------------------------------------------


class InMemoryResolver:
    """A :class:`Resolver` over a fixed set of current resources (tests, subscriptions on a batch)."""

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        self._by_key: dict[tuple[str, str], Candidate] = {(c.resource_type, c.id): c for c in candidates}

    def get(self, resource_type: str, id: str) -> Candidate | None:
        return self._by_key.get((resource_type, id))

    def referenced(self, candidate: Candidate, param: str, target_types: Sequence[str]) -> Iterable[Candidate]:
        for ref in candidate.entries.references:
            if ref.param == param and ref.type is not None and ref.type in target_types and ref.id:
                target = self._by_key.get((ref.type, ref.id))
                if target is not None:
                    yield target

    def referring(self, candidate: Candidate, source_type: str, ref_param: str) -> Iterable[Candidate]:
        for source in self._by_key.values():
            if source.resource_type == source_type and any(
                ref.param == ref_param and ref.type == candidate.resource_type and ref.id == candidate.id
                for ref in source.entries.references
            ):
                yield source

    def list_members(self, list_id: str) -> Iterable[tuple[str, str]]:
        found = self._by_key.get(("List", list_id))
        if found is None:
            return []
        return [(r.type, r.id) for r in found.entries.references if r.param == "item" and r.type and r.id]

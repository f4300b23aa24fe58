"""Index entries → the fields embedded in a resource's current document.

The current document of a resource carries its search index beside the body:

* ``ix`` — one array per entry type, each element one entry (``ix.s`` strings, ``ix.t`` tokens, ``ix.d`` dates,
  ``ix.n`` numbers, ``ix.q`` quantities, ``ix.r`` references, ``ix.u`` uris, ``ix.c`` composites).  Every element
  names its search parameter (``p``); absent text fields are ``""`` (as in the SQLite index, so ``|code`` finds
  codes without a system).  A composite element holds one array per component (``k0``, ``k1``, …) of entries
  tagged with their kind (``k``), so that the parts of a composite value match within one element.  Multikey
  compound indexes ``(type, ix.X.p, value…)`` serve them, and ``$elemMatch`` keeps the conditions on one entry.
* ``srt`` — per parameter, the values a search sorts by (the smallest for ascending, the largest for descending,
  over the parameter's non-composite entries) and a presence flag ``e`` that puts resources without a value last.
* ``ft`` — the full-text tokens of the narrative (``n``) and of every string (``c``), as arrays for word-prefix
  look-ups through an index, and as space-joined sequences (``ns``/``cs``) for phrases.  When they would not fit
  (over 1 MB of tokens: a large Bundle or CodeSystem), they go to the ``fulltext`` collection instead, in parts of
  50,000 tokens that overlap by 16 (so a phrase of up to 16 tokens is inside one part), and ``ftx`` says so.

Documents of deleted resources carry none of these, so nothing matches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.indexing.entries import (
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
from fhir_server.search.matcher import fulltext_tokens

Doc = dict[str, Any]

# the ix.* array of each parameter type (composites and Location.near live in ix.c)
ARRAY = {
    "string": "s", "token": "t", "date": "d", "number": "n", "quantity": "q", "reference": "r", "uri": "u",
    "composite": "c", "near": "c",
}  # fmt: skip


def entry_doc(entry: Entry) -> Doc:
    """One entry as an array element (without its parameter, which the caller adds)."""
    match entry:
        case StringEntry():
            return {"n": entry.norm, "e": entry.exact}
        case TokenEntry():
            return {"c": entry.code or "", "s": entry.system or "", "x": entry.text or "",
                    "ts": entry.type_system or "", "tc": entry.type_code or ""}
        case DateEntry():
            return {"lo": entry.low, "hi": entry.high}
        case NumberEntry():
            return {"v": entry.value, "lo": entry.low, "hi": entry.high}
        case QuantityEntry():
            doc: Doc = {"v": entry.value, "lo": entry.low, "hi": entry.high, "s": entry.system or "",
                        "c": entry.code or "", "u": entry.unit or "", "cc": entry.canonical_code or ""}
            if entry.canonical_code:
                doc.update(cv=entry.canonical_value, clo=entry.canonical_low, chi=entry.canonical_high)
            return doc
        case ReferenceEntry():
            return {"t": entry.type or "", "i": entry.id or "", "v": entry.version or "", "u": entry.url or "",
                    "is": entry.identifier_system or "", "iv": entry.identifier_value or ""}
        case UriEntry():
            return {"u": entry.uri}
    raise TypeError(f"not an index entry: {entry!r}")


KIND = {StringEntry: "s", TokenEntry: "t", DateEntry: "d", NumberEntry: "n", QuantityEntry: "q",
        ReferenceEntry: "r", UriEntry: "u"}


def _simple(entries: IndexEntries) -> Iterable[Entry]:
    yield from entries.strings
    yield from entries.tokens
    yield from entries.dates
    yield from entries.numbers
    yield from entries.quantities
    yield from entries.references
    yield from entries.uris


FT_INLINE_MAX = 1024 * 1024
FT_PART_TOKENS = 50_000
FT_OVERLAP = 16


def index_fields(entries: IndexEntries) -> tuple[Doc, list[Doc]]:
    """``ix``, ``srt`` and ``ft`` (or ``ftx``) for one resource version, and the full-text parts stored beside it
    (``f``: ``n`` narrative or ``c`` content, ``t``: its distinct tokens, ``s``: the token sequence)."""
    ix: dict[str, list[Doc]] = {}
    for entry in _simple(entries):
        ix.setdefault(KIND[type(entry)], []).append({"p": entry.param, **entry_doc(entry)})
    for composite in entries.composites:
        element: Doc = {"p": composite.param}
        for index, component in enumerate(composite.components):
            element[f"k{index}"] = [{"k": KIND[type(e)], **entry_doc(e)} for e in component]
        ix.setdefault("c", []).append(element)
    out: Doc = {"ix": ix, "srt": sort_keys(entries)}
    ft: Doc = {}
    parts: list[Doc] = []
    for name, text in (("n", entries.narrative), ("c", entries.content)):
        tokens = fulltext_tokens(text) if text else ()
        if not tokens:
            continue
        if sum(len(t) + 1 for t in tokens) <= FT_INLINE_MAX:
            ft[name] = sorted(set(tokens))
            ft[name + "s"] = " " + " ".join(tokens) + " "
            continue
        for start in range(0, len(tokens), FT_PART_TOKENS):
            part = tokens[start : start + FT_PART_TOKENS + FT_OVERLAP]
            parts.append({"f": name, "t": sorted(set(part)), "s": " " + " ".join(part) + " "})
    if ft:
        out["ft"] = ft
    if parts:
        out["ftx"] = True
    return out, parts


def _sort_values(entry: Entry) -> tuple[Any, Any]:
    """(ascending, descending) sort value of one entry: what the SQLite backend sorts by, per type."""
    match entry:
        case StringEntry():
            return entry.norm, entry.norm
        case TokenEntry():
            return entry.code or "", entry.code or ""
        case DateEntry():
            return entry.low, entry.high
        case NumberEntry() | QuantityEntry():
            return entry.value, entry.value
        case UriEntry():
            return entry.uri, entry.uri
        case ReferenceEntry():
            text = f"{entry.type or ''}/{entry.id or ''}"
            return text, text
    raise TypeError(entry)


def sort_field(param: str) -> str:
    """The ``srt`` key of a parameter (field names may not contain ``.`` nor start with ``$``)."""
    return param.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def sort_keys(entries: IndexEntries) -> Doc:
    keys: dict[str, Doc] = {}
    for entry in _simple(entries):
        asc, desc = _sort_values(entry)
        key = sort_field(entry.param)
        found = keys.get(key)
        if found is None:
            keys[key] = {"e": 1, "a": asc, "d": desc}
        else:
            found["a"] = min(found["a"], asc)
            found["d"] = max(found["d"], desc)
    return keys

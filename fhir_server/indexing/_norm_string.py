"""String normalisation and ``string`` parameter entries.

``norm`` (per :mod:`fhir_server.indexing.entries`): Unicode NFKD, combining marks removed, case-folded,
whitespace runs collapsed to one space, trimmed — in that order, which is also what the query side
(``fhir_server.search.values.normalise_string``) does.  ASCII text takes a shortcut with the same result (NFKD
leaves ASCII unchanged and ASCII case folding is ``lower()``).

What a string parameter indexes, per data type (search.html#string):

* string, markdown and the other string-like primitives (code, id, uri, ...): the value;
* HumanName: ``family``, each ``given``, ``prefix``, ``suffix`` and ``text`` — separate entries, so a search
  matches any part;
* Address: each ``line``, ``city``, ``district``, ``state``, ``postalCode``, ``country`` and ``text``;
* CodeableConcept: ``text`` and each ``coding.display``; Coding: ``display``; ContactPoint: ``value``;
  Identifier: ``value``; Reference: ``display``; Annotation: ``text``; Attachment: ``title``; Quantity-like
  values and other types are not string-searchable and give nothing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from fhir_server.indexing.entries import Entry, StringEntry

__all__ = ["STRING_NORMALISERS", "normalise_string", "string_entry"]

Out = list[Entry]


def normalise_string(text: str) -> str:
    """The case- and accent-insensitive form of ``text`` (see the module docstring)."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def string_entry(param: str, value: Any, out: Out) -> None:
    """One entry for a string value; nothing for a non-string or blank value."""
    if type(value) is str:
        norm = normalise_string(value)
        if norm:
            out.append(StringEntry(param, norm, value))


def _parts(keys: tuple[str, ...]) -> Callable[[str, Any, dict[str, Any], Out], None]:
    def parts(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
        if type(value) is not dict:
            return
        for key in keys:
            part = value.get(key)
            if type(part) is list:
                for item in part:
                    string_entry(param, item, out)
            elif part is not None:
                string_entry(param, part, out)

    return parts


def _primitive(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    string_entry(param, value, out)


def _codeable_concept(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is not dict:
        return
    string_entry(param, value.get("text"), out)
    codings = value.get("coding")
    if type(codings) is list:
        for coding in codings:
            if type(coding) is dict:
                string_entry(param, coding.get("display"), out)


STRING_NORMALISERS: dict[str, Callable[[str, Any, dict[str, Any], Out], None]] = {
    **dict.fromkeys(
        ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid", "xhtml"), _primitive
    ),
    "HumanName": _parts(("family", "given", "prefix", "suffix", "text")),
    "Address": _parts(("line", "city", "district", "state", "postalCode", "country", "text")),
    "CodeableConcept": _codeable_concept,
    "Coding": _parts(("display",)),
    "ContactPoint": _parts(("value",)),
    "Identifier": _parts(("value",)),
    "Reference": _parts(("display",)),
    "Annotation": _parts(("text",)),
    "Attachment": _parts(("title",)),
}

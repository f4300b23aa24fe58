"""Text for ``_text`` (the narrative) and ``_content`` (the string values of the resource)."""

from __future__ import annotations

import html
import re
from typing import Any

from fhir_server import jsonio
from fhir_server.indexing.extract import normalise_string

_TAG = re.compile(r"<[^>]*>")
# a JSON string literal in value position (followed by , } or ]), i.e. not an object key
_VALUE = re.compile(r'"((?:[^"\\]|\\.)*)"(?=\s*[,}\]])')
_MAX = 64_000  # characters indexed per field


def narrative_text(resource: dict[str, Any]) -> str:
    """The narrative's text, normalised like search strings (so ``ß`` matches ``ss``, Greek accents fold)."""
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str):
        return ""
    return normalise_string(html.unescape(_TAG.sub(" ", div)))[:_MAX]


def content_text(resource: dict[str, Any]) -> str:
    """Every string value outside the narrative and ``meta`` (codes, names, texts, identifiers …), joined by
    spaces and normalised like search strings.  Taken from the serialised JSON with one regular-expression pass: far cheaper than walking the
    tree, and JSON escapes only ever hide punctuation, which the full-text tokenizer drops anyway."""
    rest = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta", "text")}
    serialised = jsonio.dumps(rest).decode("utf-8")
    return normalise_string(" ".join(_VALUE.findall(serialised))[:_MAX])

"""Text for ``_text`` (the narrative) and ``_content`` (the string values of the resource)."""

from __future__ import annotations

import html
import re
from typing import Any

from fhir_server.indexing.extract import normalise_string

_TAG = re.compile(r"<[^>]*>")
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
    spaces and normalised like search strings."""
    out: list[str] = []
    for key, value in resource.items():
        if key in _SKIP:
            continue
        kind = type(value)
        if kind is str:
            out.append(value)
        elif kind is dict or kind is list:
            _strings(value, out)
    return normalise_string(" ".join(out)[:_MAX])


_SKIP = frozenset(("resourceType", "id", "meta", "text"))


def _strings(node: Any, out: list[str]) -> None:
    for value in node.values() if type(node) is dict else node:
        kind = type(value)
        if kind is str:
            out.append(value)
        elif kind is dict or kind is list:
            _strings(value, out)

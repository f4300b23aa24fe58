"""Text for ``_text`` (the narrative) and ``_content`` (every string value of the resource)."""

from __future__ import annotations

import html
import re
from typing import Any

_TAG = re.compile(r"<[^>]*>")
_MAX = 64_000  # characters indexed per field


def narrative_text(resource: dict[str, Any]) -> str:
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str):
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", div)).split())[:_MAX]


def content_text(resource: dict[str, Any]) -> str:
    """Every string value outside the narrative, joined by spaces (codes, names, texts, identifiers …)."""
    out: list[str] = []
    size = 0

    def walk(node: Any) -> None:
        nonlocal size
        if size > _MAX:
            return
        if isinstance(node, str):
            out.append(node)
            size += len(node) + 1
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk([v for k, v in resource.items() if k not in ("resourceType", "id", "meta", "text")])
    return " ".join(out)[:_MAX]

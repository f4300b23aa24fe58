"""Message texts per language: one JSON file per language in ``templates/`` (``en.json``, ``es.json``, …), a
subject and a body per ``<kind>.<audience>`` (audience ``patient`` or ``practitioner``), with ``$name``
placeholders.  Adding a language is adding a file with the same keys (a test checks every file is complete)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Message:
    language: str
    subject: str
    body: str


@functools.cache
def catalogue() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text("utf-8")) for path in sorted(DIR.glob("*.json"))}


def languages() -> set[str]:
    return set(catalogue())


def render(kind: str, audience: str, language: str, values: dict[str, str]) -> Message:
    """The message in ``language`` (``KeyError`` for a kind or language without a template)."""
    texts = catalogue()[language]
    entry = texts.get(f"{kind}.{audience}") or texts[f"{kind}.patient"]
    parts = texts.get("_parts", {})
    filled = dict(values)
    filled["place"] = Template(parts.get("place", "")).safe_substitute(values) if values.get("location") else ""
    filled["reason"] = (Template(parts.get("reason", "")).safe_substitute(values)
                        if values.get("cancel_reason") else "")
    for name in ("patient", "practitioner"):
        if not filled.get(name):
            filled[name] = parts.get("unknown_person", "")
    return Message(language, Template(entry["subject"]).safe_substitute(filled),
                   Template(entry["body"]).safe_substitute(filled))

"""Shared helpers for the indexing tests: one indexer over the R4 core parameters and short look-ups."""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server import jsonio
from fhir_server.definitions import load_definitions
from fhir_server.indexing.entries import CompositeEntry, Entry
from fhir_server.indexing.extract import Indexer

BASE = "https://infirmary.example/fhir"


@cache
def indexer() -> Indexer:
    """An indexer of all R4 core parameters for a server at :data:`BASE` (built once)."""
    return Indexer.from_definitions(load_definitions(), base_urls=[BASE])


def entries(resource: dict[str, Any], code: str) -> list[Entry | CompositeEntry]:
    """The entries of parameter ``code`` for ``resource``."""
    ix = indexer()
    return ix.extract_param(resource, ix.params_for(resource["resourceType"])[code])


def load(text: str) -> dict[str, Any]:
    """A resource parsed like the server parses it (exact decimals)."""
    resource = jsonio.loads(text)
    assert isinstance(resource, dict)
    return resource

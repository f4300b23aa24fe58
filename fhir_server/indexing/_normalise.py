"""Choosing the normaliser for a (parameter type, value type) pair; the rules live in the ``_norm_*`` modules.

A normaliser is ``(param code, value, resource, out)``: it appends the entries of one selected value to ``out``
and ignores values that do not have the expected shape, so extraction never raises on malformed data.

``reference`` values: Reference, canonical (``url|version``), uri/url/oid/uuid (as a URL) and whole resources
(``Bundle.entry[0].resource``) — see :mod:`~fhir_server.indexing._refs`.  ``uri`` values: any string-like
primitive, kept verbatim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.indexing._norm_date import DATE_NORMALISERS
from fhir_server.indexing._norm_number import NUMBER_NORMALISERS, QUANTITY_NORMALISERS
from fhir_server.indexing._norm_string import STRING_NORMALISERS
from fhir_server.indexing._norm_token import token_normaliser
from fhir_server.indexing._refs import References
from fhir_server.indexing._types import RESOURCE, Ctx
from fhir_server.indexing.entries import Entry, UriEntry

__all__ = ["Normaliser", "Normalisers"]

Out = list[Entry]
Normaliser = Callable[[str, Any, dict[str, Any], Out], None]
_URI_TYPES = ("uri", "url", "canonical", "oid", "uuid", "string", "code", "id", "markdown")


def _uri(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is str and value:
        out.append(UriEntry(param, value))


class Normalisers:
    """The normaliser table for one server (references need its base URLs)."""

    def __init__(self, refs: References) -> None:
        self.refs = refs
        self._reference = self._reference_normalisers()

    def for_ctx(self, param_type: str, ctx: Ctx) -> Normaliser | None:
        """The normaliser for values of static type ``ctx``; None when the type is not searchable that way."""
        if param_type == "token":
            return token_normaliser(ctx.type, ctx.code_systems)
        return self.for_type(param_type, ctx.type)

    def for_type(self, param_type: str, type_code: str) -> Normaliser | None:
        """The normaliser for values of FHIR type ``type_code``."""
        match param_type:
            case "string":
                return STRING_NORMALISERS.get(type_code)
            case "token":
                return token_normaliser(type_code)
            case "date":
                return DATE_NORMALISERS.get(type_code)
            case "number":
                return NUMBER_NORMALISERS.get(type_code)
            case "quantity":
                return QUANTITY_NORMALISERS.get(type_code)
            case "uri":
                return _uri if type_code in _URI_TYPES else None
            case "reference":
                if type_code == RESOURCE or self.refs.is_resource_type(type_code):
                    return self._resource
                return self._reference.get(type_code)
        return None

    def _reference_normalisers(self) -> dict[str, Normaliser]:
        refs = self.refs

        def reference(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
            entry = refs.reference(param, value, resource)
            if entry is not None:
                out.append(entry)

        def canonical(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
            entry = refs.canonical(param, value)
            if entry is not None:
                out.append(entry)

        def uri(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
            entry = refs.canonical(param, value, split_version=False)
            if entry is not None:
                out.append(entry)

        return {
            "Reference": reference,
            "canonical": canonical,
            **dict.fromkeys(("uri", "url", "oid", "uuid"), uri),
        }

    def _resource(self, param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
        entry = self.refs.resource(param, value)
        if entry is not None:
            out.append(entry)

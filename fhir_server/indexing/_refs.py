"""Reading references: literal (``Patient/1``, ``Patient/1/_history/2``), absolute (``http://host/fhir/Patient/1``),
contained (``#p1``), URNs (``urn:uuid:...``), logical (``Reference.identifier``), canonical (``url|version``).

Decisions (every form that can match is stored in one :class:`ReferenceEntry` per Reference):

* relative ``Type/id[/_history/v]`` → ``type``, ``id``, ``version``; ``url`` is not set.
* absolute URL starting with one of the server's base URLs → ``type``/``id``/``version`` as if relative, and ``url``
  (the URL without ``/_history/v``) too.
* any other absolute URL → ``url`` only (without ``/_history/v``, which goes to ``version``): the target lives on
  another server, so ``subject=Patient/1`` must not match it.
* ``urn:uuid:``/``urn:oid:`` (unresolved bundle-local ids, normally rewritten by transaction processing before
  indexing) → ``url`` only.
* ``#id`` (a contained resource) → ``url`` = ``#id`` and ``type`` = the contained resource's type; no ``id``, so
  that ``subject=Patient/p1`` never matches a contained resource.
* ``Reference.type`` fills ``type`` when the literal reference does not give one (a logical reference by
  identifier); ``Reference.identifier`` gives ``identifier_system``/``identifier_value`` for ``:identifier``.
* canonical values → ``url`` and ``version`` (split at ``|``), plus ``type``/``id`` when the URL is relative or on
  this server; uri values → ``url`` (no version split).
* a whole resource (``Bundle.entry[0].resource``) → its ``resourceType`` and ``id``.

:meth:`References.referenced_type` is what ``resolve() is T`` tests: the type named by the literal reference
(relative, absolute with any base, or contained), else ``Reference.type``; unknown for URNs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fhir_server.indexing.entries import ReferenceEntry

__all__ = ["References"]

_ID = r"[A-Za-z0-9\-\.]{1,64}"
_TAIL = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>{_ID}))?$")
_Literal = tuple[str | None, str | None, str | None, str | None]  # type, id, version, url
_CACHE_LIMIT = 50_000


class References:
    """Reference normalisation for one server (its base URLs) over the R4 resource types."""

    def __init__(self, resource_types: Iterable[str], base_urls: Sequence[str] = ()) -> None:
        self.resource_types = frozenset(resource_types)
        self.base_urls = tuple(url.rstrip("/") + "/" for url in base_urls if url)
        self._cache: dict[str, _Literal] = {}

    def is_resource_type(self, name: str) -> bool:
        return name in self.resource_types

    # ---------------------------------------------------------------------------------------------- entries
    def reference(self, param: str, value: Any, resource: dict[str, Any]) -> ReferenceEntry | None:
        """The entry for a ``Reference`` value, or None when it has neither a reference nor an identifier."""
        if type(value) is not dict:
            return None
        ref = value.get("reference")
        type_ = id_ = version = url = None
        if type(ref) is str and ref:
            if ref[0] == "#":
                url, type_ = ref, _contained_type(resource, ref[1:])
            else:
                type_, id_, version, url = self.literal(ref)
        declared = value.get("type")
        if type_ is None and type(declared) is str:
            type_ = declared
        system = ident_value = None
        identifier = value.get("identifier")
        if type(identifier) is dict:
            system, ident_value = _str(identifier.get("system")), _str(identifier.get("value"))
        if type_ is None and url is None and system is None and ident_value is None:
            return None
        return ReferenceEntry(param, type_, id_, version, url, system, ident_value)

    def canonical(self, param: str, text: Any, split_version: bool = True) -> ReferenceEntry | None:
        """The entry for a canonical (``url|version``) or, with ``split_version=False``, a uri value."""
        if type(text) is not str or not text:
            return None
        version = None
        if split_version and "|" in text:
            text, version = text.split("|", 1)
        if text[0] == "#":
            return ReferenceEntry(param, url=text, version=version)
        type_, id_, literal_version, url = self.literal(text)
        return ReferenceEntry(param, type_, id_, version or literal_version, url or text)

    @staticmethod
    def resource(param: str, value: Any) -> ReferenceEntry | None:
        """The entry for a whole resource selected as a reference target (``Bundle.entry[0].resource``)."""
        if type(value) is not dict or type(value.get("resourceType")) is not str:
            return None
        return ReferenceEntry(param, value["resourceType"], _str(value.get("id")))

    # ------------------------------------------------------------------------------------------- literals
    def literal(self, text: str) -> _Literal:
        """``(type, id, version, url)`` of a literal reference string, cached."""
        found = self._cache.get(text)
        if found is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[text] = self._parse(text)
        return found

    def _parse(self, text: str) -> _Literal:
        if "://" not in text and not text.startswith("urn:"):
            match = _TAIL.match(text)
            if match is not None and match.start() == 0 and match["type"] in self.resource_types:
                return match["type"], match["id"], match["version"], None
            return None, None, None, None
        match = _TAIL.search(text)
        if match is None or match["type"] not in self.resource_types:
            return None, None, None, text
        url = text[: match.end("id")]
        local = f"{match['type']}/{match['id']}"
        if any(url == base + local for base in self.base_urls):
            return match["type"], match["id"], match["version"], url
        return None, None, match["version"], url

    def referenced_type(self, value: Any, resource: dict[str, Any]) -> str | None:
        """The resource type ``resolve()`` would give for a Reference value (see the module docstring)."""
        if type(value) is not dict:
            return None
        ref = value.get("reference")
        found: str | None = None
        if type(ref) is str and ref:
            if ref[0] == "#":
                found = _contained_type(resource, ref[1:])
            else:
                found = self.literal(ref)[0] or self._any_base_type(ref)
        if found is None:
            declared = value.get("type")
            found = declared if type(declared) is str else None
        return found

    def _any_base_type(self, text: str) -> str | None:
        if "://" not in text:
            return None
        match = _TAIL.search(text)
        return match["type"] if match is not None and match["type"] in self.resource_types else None


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


def _contained_type(resource: dict[str, Any], local_id: str) -> str | None:
    contained = resource.get("contained")
    if type(contained) is not list:
        return None
    for item in contained:
        if type(item) is dict and item.get("id") == local_id:
            kind = item.get("resourceType")
            return kind if type(kind) is str else None
    return None

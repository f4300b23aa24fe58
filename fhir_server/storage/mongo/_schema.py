"""Connection settings and the indexes created at start-up."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from pymongo import ASCENDING, IndexModel

DEFAULT_DATABASE = "infirmary"

# durable, consistent defaults; a setting given in the URL wins
DEFAULT_OPTIONS: dict[str, Any] = {
    "w": "majority",
    "journal": True,
    "readConcernLevel": "majority",
    "retryWrites": True,
    "retryReads": True,
    "appname": "infirmary",
}


def client_options(url: str) -> tuple[dict[str, Any], str]:
    """The client keyword arguments (defaults the URL does not override) and the database name (the URL's path,
    or ``infirmary``).  Read from the text of the URL (no DNS look-up for ``mongodb+srv://``)."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("a MongoDB URL starts with mongodb:// or mongodb+srv://")
    rest = url.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    path, _, query = rest[cut:].partition("?")
    given = {name.lower() for name, _ in parse_qsl(query, keep_blank_values=True)}
    options = {name: value for name, value in DEFAULT_OPTIONS.items() if name.lower() not in given}
    if "j" in given:
        options.pop("journal", None)
    return options, unquote(path.lstrip("/")) or DEFAULT_DATABASE


def _idx(name: str, *fields: str, **options: Any) -> IndexModel:
    return IndexModel([(f, ASCENDING) for f in fields], name=name, **options)


# Every search condition names the resource type first: ``type`` leads each index, which is also what lets a
# collection sharded on (type, …) route a search of one type.
RESOURCE_INDEXES = [
    _idx("type_rid", "type", "del", "rid", "_id"),  # one type in creation order: default order, counts, paging
    _idx("all_rid", "del", "rid", "_id"),  # system searches in creation order
    _idx("type_lu", "type", "lu"),  # _lastUpdated
    _idx("string", "type", "ix.s.p", "ix.s.n"),
    _idx("token", "type", "ix.t.p", "ix.t.c", "ix.t.s"),
    _idx("date", "type", "ix.d.p", "ix.d.lo", "ix.d.hi"),
    _idx("number", "type", "ix.n.p", "ix.n.v"),
    _idx("quantity", "type", "ix.q.p", "ix.q.v"),
    _idx("quantity_canonical", "type", "ix.q.p", "ix.q.cc", "ix.q.cv"),
    _idx("reference", "type", "ix.r.p", "ix.r.i", "ix.r.t"),
    _idx("uri", "type", "ix.u.p", "ix.u.u"),
    _idx("composite", "type", "ix.c.p"),
    _idx("text", "type", "ft.n"),
    _idx("content", "type", "ft.c"),
]

FULLTEXT_INDEXES = [
    _idx("tokens", "type", "f", "t"),
    _idx("resource", "k"),
]

HISTORY_INDEXES = [
    _idx("type_seq", "type", "_id"),
    _idx("resource_version", "type", "id", "ver", unique=True),
    _idx("time", "lut"),
]

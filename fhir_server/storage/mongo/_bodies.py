"""Resource bodies of any size, under MongoDB's 16 MB document limit.

A body up to 4 MB is stored inline (``body``, the exact bytes served).  A larger one (the R4 example corpus has
Bundles of 30 MB) is cut into 8 MB pieces in the ``body_chunks`` collection, keyed by the version's sequence
number (``"{seq}.{i}"``), and the document says how many (``bc``); the current document and the history entry of
a version share its pieces.  Versions are never removed, so neither are their pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson.binary import Binary
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.storage.base import StoredVersion

BODY_INLINE_MAX = 4 * 1024 * 1024
BODY_CHUNK = 8 * 1024 * 1024
CHUNKS = "body_chunks"

Doc = dict[str, Any]


def body_fields(seq: int, body: bytes | None) -> tuple[Doc, list[Doc]]:
    """The body's fields in a version's documents, and the pieces to store beside them (for a large body)."""
    if body is None or len(body) <= BODY_INLINE_MAX:
        return {"body": None if body is None else Binary(body)}, []
    parts = [body[i : i + BODY_CHUNK] for i in range(0, len(body), BODY_CHUNK)]
    return {"body": None, "bc": len(parts)}, [{"_id": f"{seq}.{i}", "d": Binary(p)} for i, p in enumerate(parts)]


async def versions(
    coll: AsyncCollection[Any], docs: Sequence[Doc], session: AsyncClientSession | None, *, seq_field: str = "seq"
) -> list[StoredVersion]:
    """Stored versions from current (``seq_field="seq"``) or history (``"_id"``) documents, large bodies joined."""
    pieces: dict[str, bytes] = {}
    wanted = [f"{d[seq_field]}.{i}" for d in docs if d.get("bc") for i in range(d["bc"])]
    if wanted:
        # two 8 MB pieces per reply keep every reply under the 48 MB message limit
        cursor = coll.database[CHUNKS].find({"_id": {"$in": wanted}}, session=session, batch_size=2)
        pieces = {doc["_id"]: bytes(doc["d"]) async for doc in cursor}
    out = []
    for d in docs:
        body = d.get("body")
        if d.get("bc"):
            body = b"".join(pieces[f"{d[seq_field]}.{i}"] for i in range(d["bc"]))
        out.append(StoredVersion(d["type"], d["id"], d["ver"], d["lut"], d["m"], body))
    return out


async def version(coll: AsyncCollection[Any], doc: Doc, session: AsyncClientSession | None, *,
                  seq_field: str = "seq") -> StoredVersion:
    return (await versions(coll, [doc], session, seq_field=seq_field))[0]

"""``infirmary audit-writer``: the child process that builds, indexes and stores AuditEvents.

Started by the API process (:mod:`fhir_server.auth.audit_process`), never by hand.  Protocol on stdin: a first
line with the settings it needs and the patient-linked resource types, then one line per request or event
(:mod:`fhir_server.auth._audit_records`).  It reads what has arrived, writes it in batches (one commit each,
retried while the store refuses) and answers ``ok <lines>`` on stdout after each commit.  Lines arriving within 20 ms of each other
share a commit.  At the end of stdin it writes what it has and exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from typing import Any

from fhir_server import jsonio
from fhir_server.auth._audit_records import RELOAD, events_from_line
from fhir_server.auth.audit import VARYING, AuditWriter
from fhir_server.settings import Settings

_READ = 1 << 20
_LINGER_S = 0.02  # AuditEvents become searchable this much later; the store commits ~50 times a second
log = logging.getLogger("fhir_server.audit")


async def run() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    header = jsonio.loads(await reader.readline())
    settings = Settings.model_validate(header["settings"])
    if settings.auth.audit_writer_nice:
        os.nice(settings.auth.audit_writer_nice)  # requests first; the trail catches up when they leave CPU over
    linked = frozenset(header["linked"])

    from fhir_server.app import build_repository
    from fhir_server.definitions import load_definitions
    from fhir_server.indexing.extract import Indexer
    from fhir_server.indexing.shared_parts import SharedPartIndexer
    from fhir_server.services.search_params import load_search_parameters

    repo = build_repository(settings)
    base_urls = (settings.server.base_url,) if settings.server.base_url else ()
    indexer = Indexer.from_definitions(load_definitions(), base_urls)
    shared = SharedPartIndexer(indexer, "AuditEvent", VARYING)
    writer = AuditWriter(repo, shared.extract, split=shared.split, batch_max=settings.auth.audit_batch_max)
    out = sys.stdout.buffer
    await repo.open()
    try:
        await load_search_parameters(repo, indexer)  # the store's own SearchParameters index AuditEvents too
        gc.collect()
        gc.freeze()  # the definitions and plans live as long as the process: full collections need not walk them
        tail = b""
        while True:
            chunk, ended = await _gather(reader)
            if not chunk:
                break
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for start in range(0, len(lines), writer.batch_max):
                part = lines[start:start + writer.batch_max]
                events: list[dict[str, Any]] = []
                for line in part:
                    if line == RELOAD.rstrip(b"\n"):  # a SearchParameter was written: what follows uses it
                        if events:
                            await writer.write_batch(events)
                        events = []
                        await load_search_parameters(repo, indexer)
                    else:
                        events += _events(line, linked)
                if events:
                    await writer.write_batch(events)
                out.write(b"ok %d\n" % len(part))
                out.flush()
            if ended:
                break
    finally:
        await repo.close()


async def _gather(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """What arrives within ``_LINGER_S`` of the first byte (one commit for many requests, not one each), and
    whether stdin has ended."""
    first = await reader.read(_READ)
    if not first:
        return b"", True
    chunks = [first]
    deadline = asyncio.get_running_loop().time() + _LINGER_S
    size = len(first)
    while size < _READ:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            more = await asyncio.wait_for(reader.read(_READ - size), remaining)
        except TimeoutError:
            break
        if not more:
            return b"".join(chunks), True
        chunks.append(more)
        size += len(more)
    return b"".join(chunks), False


def _events(line: bytes, linked: frozenset[str]) -> list[dict[str, Any]]:
    try:
        return events_from_line(line, linked)
    except (ValueError, KeyError, TypeError) as exc:  # never a line of ours; not worth stopping the trail for
        log.error("audit: a line that is not an audit record was dropped (%s)", type(exc).__name__)
        return []


def main() -> None:
    asyncio.run(run())

"""How a Bulk Data export job reports progress: a job slot that keeps a queued job's heartbeat, the progress
file written after every page, and the ``X-Progress`` text a poll answers."""

from __future__ import annotations

import asyncio
from typing import Any

from fhir_server.services._bulk_files import JobFiles

HEARTBEAT_S = 30.0  # how often a queued job says it is still alive


class Slot:
    """One of the ``max_concurrent`` job slots; while it waits, the job keeps its progress file fresh."""

    def __init__(self, slots: asyncio.Semaphore, files: JobFiles) -> None:
        self.slots = slots
        self.files = files

    async def __aenter__(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.slots.acquire(), HEARTBEAT_S)
                return
            except TimeoutError:
                await asyncio.to_thread(self.files.write_progress, {"state": "queued"})

    async def __aexit__(self, *exc: object) -> None:
        self.slots.release()


class Progress:
    """Resources written so far, the type being read; written to the job's progress file (blocking I/O)."""

    def __init__(self, files: JobFiles, *, total: int, types: int, exact: bool) -> None:
        self.files = files
        self.total = total  # an upper bound; the exact total when ``exact``
        self.types = types
        self.exact = exact
        self.written = 0
        self.index = 0
        self.current = ""

    def next_type(self, resource_type: str) -> None:
        self.index += 1
        self.current = resource_type

    def add(self, count: int) -> None:
        self.written += count
        self.files.write_progress({
            "state": "running", "written": self.written, "total": self.total if self.exact else None,
            "type": self.current, "index": self.index, "types": self.types,
        })


def progress_text(progress: dict[str, Any] | None) -> str:
    """``X-Progress``: ``queued``, or ``37% (101000 of 275000 resources); Observation (type 5 of 20)`` (without
    the percentage when only an upper bound of the total is known)."""
    if not progress or progress.get("state") != "running":
        return "queued"
    written, total = progress["written"], progress.get("total")
    where = f"{progress['type']} (type {progress['index']} of {progress['types']})"
    if total:
        return f"{min(100, 100 * written // total)}% ({written} of {total} resources); {where}"
    return f"{written} resources written; {where}"

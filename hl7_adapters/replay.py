"""Re-applying logged messages: select log entries, run their raw message through the pipeline again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fhir_server import jsonio
from hl7_adapters import message_log
from hl7_adapters.inbound import InboundPipeline
from hl7_adapters.v2.parser import ParseError, parse_header


@dataclass
class Selection:
    ids: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=lambda: ["AE", "AR"])
    since: str | None = None
    until: str | None = None
    sender: str | None = None
    message_type: str | None = None
    limit: int = 10_000

    def criteria(self) -> str:
        parts = [f"code={quote(message_log.CODE_SYSTEM, safe='')}|{message_log.LOG_CODE}"]
        if self.outcomes:
            system = quote(message_log.ACK_CODE_SYSTEM, safe="")
            parts.append("code=" + ",".join(f"{system}|{o}" for o in self.outcomes))
        if self.since:
            parts.append(f"created=ge{self.since}")
        if self.until:
            parts.append(f"created=le{self.until}")
        return "&".join(parts)


def _matches(record: message_log.LogRecord, selection: Selection) -> bool:
    if selection.sender and record.sender != selection.sender:
        return False
    if selection.message_type:
        try:
            header = parse_header(record.raw)
        except ParseError:
            header = None
        if header is None:
            return False
        wanted = selection.message_type.split("^")
        if header.message_type != wanted[0] or (len(wanted) > 1 and header.trigger_event != wanted[1]):
            return False
    return True


async def select(pipeline: InboundPipeline, selection: Selection) -> list[message_log.LogRecord]:
    repo = pipeline.fhir.repo
    if selection.ids:
        ids = list(selection.ids)
    else:
        query = pipeline.fhir.resources.criteria("Basic", selection.criteria())
        ids = await repo.find(query, limit=selection.limit)
    records = []
    for id in ids:
        stored = await repo.read("Basic", id)
        if stored is None or stored.body is None:
            continue
        record = message_log.read_record(jsonio.loads(stored.body))
        if _matches(record, selection):
            records.append(record)
    records.sort(key=lambda r: r.received)
    return records[: selection.limit]


async def replay_messages(pipeline: InboundPipeline, selection: Selection, *, force: bool = False,
                          dry_run: bool = False) -> AsyncIterator[dict[str, Any]]:
    """One line per selected message: its log id, what it was, and (unless dry run) the new outcome."""
    for record in await select(pipeline, selection):
        line: dict[str, Any] = {"log": f"Basic/{record.id}", "received": record.received,
                                "sender": record.sender, "was": record.outcome}
        if not dry_run:
            result = await pipeline.process(record.raw, None, force=force)
            line["outcome"] = result.code
            if result.duplicate:
                line["duplicate"] = True
            if result.errors:
                line["error"] = result.errors[0].text
        yield line

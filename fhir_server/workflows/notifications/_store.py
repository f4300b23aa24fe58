"""Small store helpers for the notification tasks (all through the services: validated, indexed, hooked)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.storage.base import SearchRequest, StoredVersion, WriteOp, WriteOutcome

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext

PAGE = 200


def instant(epoch: float) -> str:
    """A FHIR dateTime/instant in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_of(value: str) -> float:
    """A FHIR dateTime → epoch seconds (a date alone: its start, UTC)."""
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00+00:00"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def body(stored: StoredVersion | None) -> dict[str, Any] | None:
    if stored is None or stored.deleted or stored.body is None:
        return None
    resource: dict[str, Any] = jsonio.loads(stored.body)
    return resource


async def read(ctx: JobContext, reference: str) -> tuple[StoredVersion, dict[str, Any]] | None:
    resource_type, _, id = reference.partition("/")
    if not id or "/" in id or not ctx.fhir.defs.is_resource_type(resource_type):
        return None
    stored = await ctx.repo.read(resource_type, id)
    resource = body(stored)
    return None if stored is None or resource is None else (stored, resource)


async def search(ctx: JobContext, resource_type: str, query_string: str,
                 limit: int = 10_000) -> list[tuple[StoredVersion, dict[str, Any]]]:
    query = ctx.resources.criteria(resource_type, query_string)
    found: list[tuple[StoredVersion, dict[str, Any]]] = []
    cursor = None
    while len(found) < limit:
        page = await ctx.repo.search(SearchRequest(query, min(PAGE, limit - len(found)), cursor, total=False))
        for stored in page.matches:
            resource = body(stored)
            if resource is not None:
                found.append((stored, resource))
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


def plan_create(ctx: JobContext, resource: dict[str, Any], if_none_exist: str | None = None) -> WriteOp:
    return ctx.resources.plan_create(resource["resourceType"], resource, if_none_exist)


def plan_update(ctx: JobContext, stored: StoredVersion, resource: dict[str, Any]) -> WriteOp:
    """An update that applies only to the version read (a concurrent change → 412, nothing written)."""
    resource = {k: v for k, v in resource.items() if k != "meta"}
    return ctx.resources.plan_update(stored.resource_type, stored.id, resource, if_match=f'W/"{stored.version}"')


async def write(ctx: JobContext, ops: list[WriteOp]) -> list[WriteOutcome]:
    return await ctx.resources.write(ops) if ops else []


def reference_of(resource: dict[str, Any], element: str) -> str | None:
    value = resource.get(element)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None

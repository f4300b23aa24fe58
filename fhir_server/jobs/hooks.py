"""The post-write hook: after a write commits, the reactions registered for its resource type decide what
follows, and enqueue task functions by name with ids.  Reactions run inline after the commit, so they must be
quick (read a little, enqueue); a reaction that fails is logged and does not fail the write, which has committed.
Each reaction runs as the jobs identity, audited as ``POST $job/on_write.<function name>``
(:meth:`fhir_server.jobs.context.JobContext.audited`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fhir_server.storage.base import WriteOutcome

if TYPE_CHECKING:
    from fhir_server.jobs.context import JobContext

log = logging.getLogger(__name__)

Reaction = Callable[["JobContext", WriteOutcome, dict[str, Any] | None], Awaitable[None]]
_R = Callable[["JobContext", WriteOutcome, dict[str, Any] | None], Awaitable[None]]

ANY_TYPE = "*"


class Reactions:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Reaction]] = {}

    def add(self, resource_type: str, reaction: Reaction) -> None:
        listed = self._by_type.setdefault(resource_type, [])
        if reaction not in listed:
            listed.append(reaction)

    def for_type(self, resource_type: str) -> list[Reaction]:
        return [*self._by_type.get(resource_type, ()), *self._by_type.get(ANY_TYPE, ())]


REACTIONS = Reactions()


def on_write(*resource_types: str, reactions: Reactions | None = None) -> Callable[[_R], _R]:
    """Register ``fn(ctx, outcome, resource)`` for writes of these types (``"*"``: every type).  ``resource`` is
    the body written (None for a delete); ``outcome`` carries the type, id, new version and whether it was
    created."""

    def decorate(fn: _R) -> _R:
        for resource_type in resource_types:
            (reactions or REACTIONS).add(resource_type, fn)
        return fn

    return decorate


class PostWriteHook:
    """The one hook on ``ResourceService.after_write``."""

    def __init__(self, context: Callable[[], JobContext], reactions: Reactions | None = None) -> None:
        self._context = context
        self.reactions = reactions or REACTIONS

    async def __call__(self, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        reactions = self.reactions.for_type(outcome.resource_type)
        if not reactions:
            return
        ctx = self._context()
        for reaction in reactions:
            try:
                async with ctx.audited(f"on_write.{getattr(reaction, '__name__', 'reaction')}") as run:
                    await reaction(run, outcome, resource)
            except Exception:
                log.exception("post-write reaction %s failed for a %s write",
                              getattr(reaction, "__qualname__", reaction), outcome.resource_type)

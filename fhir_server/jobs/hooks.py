"""The post-write hook: after a write commits, the reactions registered for its resource type decide what
follows, and enqueue task functions by name with ids.  Reactions run inline after the commit, so they must be
quick (read a little, enqueue); a reaction that fails is logged and does not fail the write, which has committed.
Each reaction runs as the jobs identity, audited as ``POST $job/on_write.<function name>``
(:meth:`fhir_server.jobs.context.JobContext.audited`).

A reaction registered for many types (``"*"``) may say with ``when`` which writes it can react to at all (a cheap
in-memory test); for the others no job context is entered for it — on the path of every write that is most of
the cost of a reaction that ends up doing nothing.
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
Interest = Callable[["JobContext", WriteOutcome], bool]  # False: the reaction would do nothing for this write

ANY_TYPE = "*"


class Reactions:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Reaction]] = {}
        self._interest: dict[Reaction, Interest] = {}

    def add(self, resource_type: str, reaction: Reaction, when: Interest | None = None) -> None:
        listed = self._by_type.setdefault(resource_type, [])
        if reaction not in listed:
            listed.append(reaction)
        if when is not None:
            self._interest[reaction] = when

    def interest(self, reaction: Reaction) -> Interest | None:
        """The ``when`` test of a reaction (None: it is run for every write of its types)."""
        return self._interest.get(reaction)

    def for_type(self, resource_type: str) -> list[Reaction]:
        return [*self._by_type.get(resource_type, ()), *self._by_type.get(ANY_TYPE, ())]


REACTIONS = Reactions()


def on_write(*resource_types: str, reactions: Reactions | None = None,
             when: Interest | None = None) -> Callable[[_R], _R]:
    """Register ``fn(ctx, outcome, resource)`` for writes of these types (``"*"``: every type).  ``resource`` is
    the body written (None for a delete); ``outcome`` carries the type, id, new version and whether it was
    created.  ``when(ctx, outcome)``: False for writes the reaction would do nothing for (it is then not run)."""

    def decorate(fn: _R) -> _R:
        for resource_type in resource_types:
            (reactions or REACTIONS).add(resource_type, fn, when)
        return fn

    return decorate


class PostWriteHook:
    """The one hook on ``ResourceService.after_write``."""

    def __init__(self, context: Callable[[], JobContext], reactions: Reactions | None = None) -> None:
        """``context`` makes the (immutable) JobContext the reactions start from: made once, on the first write
        that has reactions."""
        self._context = context
        self._made: JobContext | None = None
        self.reactions = reactions or REACTIONS

    async def __call__(self, outcome: WriteOutcome, resource: dict[str, Any] | None) -> None:
        reactions = self.reactions.for_type(outcome.resource_type)
        if not reactions:
            return
        ctx = self._made
        if ctx is None:
            ctx = self._made = self._context()
        for reaction in reactions:
            try:
                when = self.reactions.interest(reaction)
                if when is not None and not when(ctx, outcome):
                    continue
                async with ctx.audited(f"on_write.{getattr(reaction, '__name__', 'reaction')}") as run:
                    await reaction(run, outcome, resource)
            except Exception:
                log.exception("post-write reaction %s failed for a %s write",
                              getattr(reaction, "__qualname__", reaction), outcome.resource_type)

"""The in-process job runner of the embedded default: background coroutines tracked and stopped at shutdown.

Task functions take ids, never resources, so that the same functions can run under Celery in production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class InProcessRunner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def submit(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._run(name, fn, *args), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed", name)
            raise

    async def drain(self) -> None:
        """Wait for every running job (tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

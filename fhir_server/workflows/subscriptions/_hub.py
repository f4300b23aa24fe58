"""Websocket subscribers bound in this process: ``bind <id>`` → ``bound <id>``; each event → ``ping <id>``."""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


class WebsocketHub:
    def __init__(self) -> None:
        self._bound: dict[str, set[Socket]] = {}

    def bind(self, sub_id: str, socket: Socket) -> None:
        self._bound.setdefault(sub_id, set()).add(socket)

    def unbind(self, socket: Socket) -> None:
        for sub_id in list(self._bound):
            sockets = self._bound[sub_id]
            sockets.discard(socket)
            if not sockets:
                del self._bound[sub_id]

    def bound(self, sub_id: str) -> bool:
        return bool(self._bound.get(sub_id))

    def any_bound(self) -> bool:
        return bool(self._bound)

    async def ping(self, sub_id: str) -> int:
        """Tell every socket bound to the Subscription; returns how many were told."""
        told = 0
        for socket in list(self._bound.get(sub_id, ())):
            try:
                await socket.send_text(f"ping {sub_id}")
                told += 1
            except Exception:  # the client went away: forget it
                log.debug("a websocket subscriber went away")
                with contextlib.suppress(Exception):
                    self.unbind(socket)
        return told

"""An MLLP client: send a message, wait for its answer frame (outbound orders, tests, the benchmark)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType

from hl7_adapters.mllp.framing import FrameDecoder, frame


class MllpError(ConnectionError):
    """The peer closed the connection or did not answer in time."""


class MllpClient:
    """One connection; ``send`` writes a frame and returns the next frame the peer answers with."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, max_size: int = 16 * 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(max_size)
        self._ready: list[bytes] = []

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl_context,
                                    server_hostname=self.host if self.ssl_context else None),
            self.timeout_s,
        )

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
            self._writer = self._reader = None

    async def write(self, message: bytes) -> None:
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        self._writer.write(frame(message))
        await self._writer.drain()

    async def read(self, timeout_s: float | None = None) -> bytes:
        """The next frame from the peer; ``MllpError`` on timeout or a closed connection."""
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout_s if timeout_s is None else timeout_s)
        while not self._ready:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MllpError(f"no answer from {self.host}:{self.port} in time")
            try:
                data = await asyncio.wait_for(self._reader.read(65536), remaining)
            except TimeoutError:
                raise MllpError(f"no answer from {self.host}:{self.port} in time") from None
            if not data:
                raise MllpError(f"{self.host}:{self.port} closed the connection")
            self._ready.extend(self._decoder.feed(data))
        return self._ready.pop(0)

    async def send(self, message: bytes) -> bytes:
        await self.write(message)
        return await self.read()

"""The MLLP listener: an asyncio server that reads frames, hands each message to a handler, writes its ACKs.

* **Framing** (``framing.FrameDecoder``): frames split across reads, several per connection, up to
  ``max_message_bytes``; a message cut mid-frame is never processed.
* **Order**: messages of one connection are handled one after another and answered in order (MLLP senders wait
  for the ACK; pipelining senders get their ACKs in sending order).
* **Timeouts**: ``idle_timeout_s`` between messages, ``read_timeout_s`` once a frame has started; both close the
  connection (a partial frame is dropped).
* **Limits**: more than ``max_connections`` open connections → the new one is closed at once.
* **TLS** when a certificate is configured (client certificates required when a client CA is given).
* **Graceful shutdown** (``stop``): stop accepting, let each connection finish the message it is handling and
  send its ACK, close idle connections, cancel what is left after ``grace_s``.
* **Never crashes**: a handler exception is logged (without message content) and the connection closed without
  an ACK; the sender retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hl7_adapters.mllp.framing import FrameDecoder, FrameTooLarge, frame

log = logging.getLogger("hl7_adapters.mllp")

_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Peer:
    """Who sent a message: the remote address and, with TLS client certificates, the certificate subject."""

    address: str
    port: int
    certificate_subject: str | None = None


# a handler: message bytes → the frames to answer with (0, 1 or 2 ACKs), in order
Handler = Callable[[bytes, Peer], Awaitable[Sequence[bytes]]]


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 64
    idle_timeout_s: float = 300.0
    read_timeout_s: float = 30.0
    max_message_bytes: int = 16 * 1024 * 1024


def server_ssl_context(cert: Path, key: Path | None, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key) if key else None)
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MllpServer:
    def __init__(self, handler: Handler, limits: ServerLimits | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits or ServerLimits()
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._closing = False
        self.messages = 0  # handled so far
        self.refused = 0  # connections refused by the limit

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._server = await asyncio.start_server(
            self._accept, host, port, ssl=self.ssl_context, limit=_READ_CHUNK, reuse_port=reuse_port or None,
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or len(self._connections) >= self.limits.max_connections:
            self.refused += 1
            log.warning("MLLP: connection refused (%s open, limit %d)", len(self._connections),
                        self.limits.max_connections)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(self, reader, writer)
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            self._connections.pop(task, None)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting; finish in-flight messages (up to ``grace_s``), then close every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close_when_idle()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None


class _Connection:
    def __init__(self, server: MllpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(server.limits.max_message_bytes)
        self.busy = False
        self.closing = False
        peername = writer.get_extra_info("peername") or ("", 0)
        cert = writer.get_extra_info("peercert")
        subject = None
        if cert:
            subject = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        self.peer = Peer(str(peername[0]), int(peername[1]) if len(peername) > 1 else 0, subject)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy:
            self.writer.close()  # wakes the reader with EOF

    async def run(self) -> None:
        try:
            await self._loop()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as exc:
            log.debug("MLLP: connection from %s ended: %s", self.peer.address, type(exc).__name__)
        except FrameTooLarge as exc:
            log.warning("MLLP: %s from %s; connection closed", exc, self.peer.address)
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), timeout=1.0)

    async def _loop(self) -> None:
        limits = self.server.limits
        while not self.closing:
            timeout = limits.read_timeout_s if self.decoder.in_frame else limits.idle_timeout_s
            try:
                data = await asyncio.wait_for(self.reader.read(_READ_CHUNK), timeout)
            except TimeoutError:
                if self.decoder.in_frame:
                    log.warning("MLLP: a message from %s was not completed within %.0f s; dropped",
                                self.peer.address, limits.read_timeout_s)
                return
            if not data:
                if self.decoder.in_frame:
                    log.warning("MLLP: connection from %s closed mid-message (%d bytes dropped)",
                                self.peer.address, self.decoder.pending)
                return
            for message in self.decoder.feed(data):
                await self._handle(message)
                if self.closing:
                    return

    async def _handle(self, message: bytes) -> None:
        self.busy = True
        try:
            try:
                replies = await self.server.handler(message, self.peer)
            except Exception:
                log.exception("MLLP: handling a message from %s failed; no ACK sent", self.peer.address)
                self.closing = True
                return
            self.server.messages += 1
            if replies:
                self.writer.write(b"".join(frame(r) for r in replies))
                await self.writer.drain()
        finally:
            self.busy = False

"""The MLLP server with a handler of its own: order, pipelining, timeouts, limits, TLS, graceful shutdown."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from hl7_adapters.mllp.client import MllpClient, MllpError
from hl7_adapters.mllp.framing import frame
from hl7_adapters.mllp.server import MllpServer, Peer, ServerLimits, server_ssl_context


class Recorder:
    """Answers each message with ``ACK:<message>``; ``delay`` makes it slow, ``fail_on`` makes it raise."""

    def __init__(self, delay: float = 0.0, fail_on: bytes | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.seen: list[bytes] = []
        self.peers: list[Peer] = []

    async def __call__(self, message: bytes, peer: Peer) -> Sequence[bytes]:
        if self.delay:
            await asyncio.sleep(self.delay)
        if message == self.fail_on:
            raise RuntimeError("handler failure")
        self.seen.append(message)
        self.peers.append(peer)
        return [b"ACK:" + message] if message != b"silent" else []


async def _server(handler: Recorder, **limits: float) -> MllpServer:
    server = MllpServer(handler, ServerLimits(**limits))  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(recorder: Recorder) -> AsyncIterator[MllpServer]:
    srv = await _server(recorder)
    yield srv
    await srv.stop(1.0)


async def test_several_messages_and_split_writes(server: MllpServer, recorder: Recorder) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    data = frame(b"one") + frame(b"two") + frame(b"x" * 200_000)
    for i in range(0, len(data), 7777):  # split across many writes, frames straddling them
        writer.write(data[i:i + 7777])
        await writer.drain()
    client = MllpClient("127.0.0.1", server.port)
    client._reader = reader  # read the answers of this raw connection with the client's decoder
    assert await client.read(5) == b"ACK:one"
    assert await client.read(5) == b"ACK:two"
    assert await client.read(5) == b"ACK:" + b"x" * 200_000
    writer.close()
    assert recorder.seen[:2] == [b"one", b"two"] and recorder.peers[0].address == "127.0.0.1"


async def test_handler_without_answer_and_failure_closes(server: MllpServer, recorder: Recorder) -> None:
    recorder.fail_on = b"boom"
    async with MllpClient("127.0.0.1", server.port, timeout_s=2) as client:
        await client.write(b"silent")
        with pytest.raises(MllpError):
            await client.read(0.3)
        await client.write(b"boom")
        with pytest.raises(MllpError, match="closed"):
            await client.read(2)
    async with MllpClient("127.0.0.1", server.port, timeout_s=2) as client:  # the server is still up
        assert await client.send(b"after") == b"ACK:after"


async def test_cut_mid_frame_is_never_processed() -> None:
    recorder = Recorder()
    server = await _server(recorder)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x0bMSH|half a messa")
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)
        assert recorder.seen == []
    finally:
        await server.stop(1.0)


async def test_read_and_idle_timeouts() -> None:
    recorder = Recorder()
    server = await _server(recorder, read_timeout_s=0.2, idle_timeout_s=0.4)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x0bstarted but never ends")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the read timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the idle timeout
        assert recorder.seen == []
    finally:
        await server.stop(1.0)


async def test_connection_limit() -> None:
    server = await _server(Recorder(), max_connections=2)
    try:
        clients = [MllpClient("127.0.0.1", server.port, timeout_s=2) for _ in range(3)]
        for c in clients[:2]:
            assert await c.send(b"hi") == b"ACK:hi"
        await clients[2].connect()
        with pytest.raises(MllpError, match="closed"):
            await clients[2].send(b"third")
        assert server.refused == 1
        for c in clients:
            await c.close()
    finally:
        await server.stop(1.0)


async def test_graceful_shutdown_finishes_in_flight() -> None:
    recorder = Recorder(delay=0.5)
    server = await _server(recorder)
    port = server.port
    client = MllpClient("127.0.0.1", port, timeout_s=5)
    await client.write(b"in flight")
    await asyncio.sleep(0.1)  # the handler is running
    idle = MllpClient("127.0.0.1", port, timeout_s=5)
    await idle.connect()
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.stop(5.0))
    assert await client.read(5) == b"ACK:in flight"  # answered although the server is stopping
    await asyncio.wait_for(stopping, 5)
    with pytest.raises(MllpError):
        await idle.send(b"too late")
    with pytest.raises(OSError):
        await MllpClient("127.0.0.1", port, timeout_s=1).connect()  # no longer listening
    await client.close()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server = MllpServer(Recorder(), ServerLimits(), server_ssl_context(cert, key, None))
    await server.start("127.0.0.1", 0)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with MllpClient("localhost", server.port, timeout_s=5, ssl_context=context) as client:
            assert await client.send(b"secret") == b"ACK:secret"
        async with MllpClient("127.0.0.1", server.port, timeout_s=2) as plain:  # no TLS: no answer
            with pytest.raises(MllpError):
                await plain.send(b"plain")
    finally:
        await server.stop(1.0)

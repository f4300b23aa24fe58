"""Real servers the notification tests deliver to: an SMTP server with STARTTLS (aiosmtpd, a self-signed
certificate the client verifies), an HTTP endpoint standing in for the SMS gateway, Redis and a Celery worker."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Mail:
    rcpt: list[str]
    raw: str
    tls: bool

    @property
    def data(self) -> str:
        """Headers (decoded subject) and the decoded text body."""
        from email import message_from_string, policy

        message = message_from_string(self.raw, policy=policy.default)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        return f"Subject: {message['Subject']}\nMessage-ID: {message['Message-ID']}\n" \
               f"X-Infirmary-Reference: {message['X-Infirmary-Reference']}\n\n{text}"


class _Handler:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(Mail(list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace"),
                               session.ssl is not None))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that refuses mail before STARTTLS."""

    def __init__(self, directory: Path) -> None:
        import ssl

        self.cert, key = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.handler = _Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True)

    def mails_to(self, address: str) -> list[Mail]:
        return [m for m in self.handler.mails if address in m.rcpt]


@dataclass
class SmsRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SmsEndpoint:
    """A local HTTP server standing in for the SMS gateway: records requests; fails the first ``fail[to]``
    requests for a number with 503."""

    requests: list[SmsRequest] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = SmsRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                to = _recipient(request)
                if endpoint.fail.get(to, 0) > 0:
                    endpoint.fail[to] -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                endpoint.requests.append(request)
                answer = json.dumps({"id": f"gw-{len(endpoint.requests)}", "sid": f"SM{len(endpoint.requests)}"})
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def to(self, number: str) -> list[SmsRequest]:
        return [r for r in self.requests if _recipient(r) == number]


def _recipient(request: SmsRequest) -> str:
    if request.headers.get("content-type", "").startswith("application/json"):
        return str(json.loads(request.body).get("to"))
    from urllib.parse import parse_qs

    return parse_qs(request.body.decode()).get("To", [""])[0]


def redis_binary() -> str | None:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                            else None)


class RedisServer:
    def __init__(self, directory: Path) -> None:
        binary = redis_binary()
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (make test installs it; CI=true requires it)")
            pytest.skip("redis-server is not installed (run make test, which installs it)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from redis import Redis

        client = Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class InfirmaryCommand:
    """``infirmary <args>`` in a subprocess, its output in ``log``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "fhir_server", *args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class CeleryBeat(InfirmaryCommand):
    """``infirmary beat`` in a subprocess, its state file beside its log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["beat", "--loglevel", "WARNING", "--schedule", str(log.with_suffix(".state"))], env, log)


class CeleryWorker(InfirmaryCommand):
    """``infirmary worker`` in a subprocess (solo pool: one process, one task at a time)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["worker", "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING"], env, log)

    def wait_ready(self, celery: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.proc.returncode}")
            if celery.control.ping(timeout=0.5):
                return
        raise RuntimeError("the Celery worker did not answer a ping")

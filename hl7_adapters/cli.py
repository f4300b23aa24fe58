"""``infirmary mllp`` (the listener on its own) and ``infirmary hl7 replay`` (re-apply logged messages)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from fhir_server import jsonio
from fhir_server.settings import Settings


def _settings(**values: Any) -> Settings:
    for key, value in values.items():
        if value is not None:
            os.environ[key] = str(value)
    return Settings()


@click.command(help="Run the MLLP listener on its own (no HTTP): HL7 v2 messages in, ACKs out.")
@click.option("--host", default=None, help="address to listen on [default: FHIR_HL7__HOST, 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port [default: FHIR_HL7__PORT, 2575]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def mllp(host: str | None, port: int | None, data_dir: Path | None) -> None:
    settings = _settings(FHIR_HL7__ENABLED="true", FHIR_HL7__HOST=host, FHIR_HL7__PORT=port,
                         FHIR_DATA_DIR=data_dir)
    if not settings.auth.enabled:
        click.echo("WARNING: authorization is off (FHIR_AUTH__ENABLED=false): messages are not audited", err=True)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from fhir_server.app import create_app

    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        server = app.state.hl7.server
        click.echo(f"MLLP listener on {settings.hl7.host}:{server.port if server else '?'} "
                   f"(store: {settings.sqlite_file() if settings.storage.backend == 'sqlite' else 'MongoDB'})",
                   err=True)
        sys.stderr.flush()
        await stop.wait()
        click.echo("stopping: finishing in-flight messages", err=True)


@click.group(help="HL7 v2 messages: the message log.")
def hl7() -> None:
    pass


@hl7.command(help="Re-apply logged HL7 v2 messages (by default those answered AE or AR) through the inbound "
                  "pipeline, oldest first, and print each outcome.")
@click.option("--id", "ids", multiple=True, help="a message log entry (Basic id); repeatable")
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(["AA", "AE", "AR"]),
              help="the logged outcome to select [default: AE and AR]; repeatable")
@click.option("--since", default=None, help="received on or after this date (YYYY-MM-DD)")
@click.option("--until", default=None, help="received on or before this date (YYYY-MM-DD)")
@click.option("--sender", default=None, help="only from this sender (APP^FACILITY as logged)")
@click.option("--type", "message_type", default=None, help="only this message type, e.g. ORU or ORU^R01")
@click.option("--limit", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--force", is_flag=True, help="re-apply messages whose control id was applied (AA) already")
@click.option("--dry-run", is_flag=True, help="list what would be replayed")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def replay(ids: tuple[str, ...], outcomes: tuple[str, ...], since: str | None, until: str | None,
           sender: str | None, message_type: str | None, limit: int, force: bool, dry_run: bool,
           data_dir: Path | None) -> None:
    from hl7_adapters.replay import Selection

    settings = _settings(FHIR_DATA_DIR=data_dir, FHIR_HL7__ENABLED="false")
    selection = Selection(ids=list(ids), outcomes=list(outcomes) or ["AE", "AR"], since=since, until=until,
                          sender=sender, message_type=message_type, limit=limit)
    code = asyncio.run(_replay(settings, selection, force, dry_run))
    sys.exit(code)


async def _replay(settings: Settings, selection: Any, force: bool, dry_run: bool) -> int:
    from fhir_server.app import create_app
    from hl7_adapters.replay import replay_messages

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        failed = 0
        async for line in replay_messages(app.state.hl7.pipeline, selection, force=force, dry_run=dry_run):
            click.echo(jsonio.dumps(line).decode())
            if line.get("outcome") not in (None, "AA"):
                failed += 1
        with contextlib.suppress(Exception):
            await app.state.fhir.runner.drain()
    return 1 if failed else 0

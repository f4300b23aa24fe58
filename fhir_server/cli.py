"""The ``infirmary`` command line: serve, load."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from fhir_server import __version__, jsonio
from fhir_server.errors import FhirError
from fhir_server.settings import Settings


@click.group(help="Infirmary: a hospital management system built as a FHIR R4 (4.0.1) server.")
@click.version_option(__version__, prog_name="infirmary")
def main() -> None:
    pass


def _apply_env(**values: Any) -> Settings:
    """Command-line options become FHIR_* settings, so that uvicorn's worker processes see them too."""
    for key, value in values.items():
        if value is not None:
            os.environ[key] = str(value)
    return Settings()


@main.command(help="Serve the FHIR API (and, as they arrive, the apps and listeners).")
@click.option("--host", default=None, help="address to listen on [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port [default: 8080]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where the store lives [default: ./data]")
@click.option("--workers", type=int, default=None, help="worker processes [default: 1]")
@click.option("--demo/--no-demo", default=None, help="load the demo data set into an empty store first")
def serve(host: str | None, port: int | None, data_dir: Path | None, workers: int | None,
          demo: bool | None) -> None:
    import uvicorn

    settings = _apply_env(
        FHIR_SERVER__HOST=host,
        FHIR_SERVER__PORT=port,
        FHIR_DATA_DIR=data_dir,
        FHIR_SERVER__WORKERS=workers,
        FHIR_DEMO=None if demo is None else str(demo).lower(),
    )
    if not settings.auth.enabled:
        if not is_loopback(settings.server.host):
            raise click.ClickException(
                "FHIR_AUTH__ENABLED=false (no access tokens, no audit) is for local development only: the server "
                f"then listens on a loopback address only (127.0.0.1, ::1, localhost), not {settings.server.host!r}")
        click.echo("WARNING: authorization is off (FHIR_AUTH__ENABLED=false): local development only", err=True)
    if settings.demo:
        loaded = asyncio.run(_load_demo(settings))
        click.echo(f"demo data: {loaded} resources loaded" if loaded else "demo data: store not empty, skipped")
    base = f"http://{settings.server.host}:{settings.server.port}"
    click.echo(f"Infirmary {__version__} — FHIR R4 (4.0.1)")
    click.echo(f"  FHIR API:           {base}/fhir")
    click.echo(f"  CapabilityStatement: {base}/fhir/metadata")
    click.echo(f"  API explorer:       {base}/docs")
    store = settings.sqlite_file() if settings.storage.backend == "sqlite" else "MongoDB (FHIR_STORAGE__MONGODB_URL)"
    click.echo(f"  store:              {store}")
    if settings.hl7.enabled:
        click.echo(f"  MLLP (HL7 v2):      {settings.hl7.host}:{settings.hl7.port}")
    if settings.demo:
        from fhir_server.demo.auth import demo_summary

        for line in demo_summary(base):
            click.echo(f"  {line}")
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level=settings.log_level,
        access_log=False,
    )


@main.command("audit-writer", hidden=True,
              help="The audit writer process an API process starts for itself (see fhir_server.auth.audit_process).")
def audit_writer() -> None:
    from fhir_server.auth._audit_child import main as child_main

    child_main()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _load_demo(settings: Settings) -> int:
    from fhir_server.app import create_app
    from fhir_server.demo import load_demo
    from fhir_server.demo.scheduling import load_scheduling_demo

    app = create_app(settings)
    context = app.state.fhir
    await context.repo.open()
    try:
        if await context.repo.count() > 0:
            return 0
        loaded = await load_demo(context.resources)
        return loaded + await load_scheduling_demo(context.resources, context.search, settings.scheduling)
    finally:
        await context.repo.close()


def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file())
        else:
            yield path


_CHUNK = 500  # loose resources are written in transactions of this many


def _bundles(path: Path) -> Iterator[tuple[str, bytes, int]]:
    """(what, transaction or batch Bundle JSON, entry count) for one file.

    Transaction and batch Bundles go as they are; single resources, ndjson lines and the entries of collection,
    searchset and history Bundles are wrapped in transactions of up to ``_CHUNK`` entries (PUT when the resource
    has an id, so loading twice updates rather than duplicates; POST otherwise)."""
    text = path.read_bytes()
    if path.suffix == ".ndjson":
        resources = [jsonio.loads(line) for line in text.splitlines() if line.strip()]
    else:
        value = jsonio.loads(text)
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and value.get("type") in (
            "transaction", "batch"
        ):
            yield str(path), text, len(value.get("entry", []))
            return
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and value.get("type") in (
            "collection", "searchset", "history"
        ):
            resources = [e["resource"] for e in value.get("entry", [])
                         if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        else:
            resources = [value]
    for start in range(0, len(resources), _CHUNK):
        chunk = resources[start:start + _CHUNK]
        entries = []
        for resource in chunk:
            rtype, id = str(resource.get("resourceType", "")), resource.get("id")
            request = {"method": "PUT", "url": f"{rtype}/{id}"} if id else {"method": "POST", "url": rtype}
            entries.append({"resource": resource, "request": request})
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        yield f"{path}[{start}:{start + len(chunk)}]", jsonio.dumps(bundle), len(chunk)


@main.command(help="Load FHIR data through the transaction path: transaction and batch Bundles, resources, "
                   "ndjson and collection Bundles (directories recursively).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Bundles in flight at once (the store commits them together)")
def load(paths: tuple[Path, ...], data_dir: Path | None, concurrency: int) -> None:
    settings = _apply_env(FHIR_DATA_DIR=data_dir)
    sys.exit(asyncio.run(_load(settings, list(_files(paths)), concurrency)))


async def _load(settings: Settings, files: list[Path], concurrency: int = 4) -> int:
    from fhir_server.app import create_app

    context = create_app(settings).state.fhir
    base_url = settings.server.base_url or f"http://{settings.server.host}:{settings.server.port}/fhir"
    await context.repo.open()
    ok = failed = 0
    started = time.perf_counter()
    slots = asyncio.Semaphore(concurrency)

    async def one(what: str, body: bytes, count: int) -> None:
        nonlocal ok, failed
        async with slots:
            try:
                response = await context.bundles.process(body, base_url=base_url, prefer="minimal")
            except FhirError as exc:
                failed += count
                click.echo(f"\n{what}: rejected, nothing of it stored: {exc.diagnostics}", err=True)
                return
        for index, entry in enumerate(response["entry"]):
            status = entry["response"]["status"]
            if status[:1] in ("2", "3"):
                ok += 1
            else:  # a batch entry
                failed += 1
                click.echo(f"\n{what}: entry {index}: {status}", err=True)

    try:
        with click.progressbar(files, label="loading", show_pos=True) as bar:
            pending: set[asyncio.Task[None]] = set()
            for path in bar:
                try:
                    for what, body, count in _bundles(path):
                        while len(pending) >= concurrency * 2:
                            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        pending.add(asyncio.create_task(one(what, body, count)))
                except (jsonio.JsonError, OSError) as exc:
                    click.echo(f"\n{path}: unreadable: {exc}", err=True)
                    failed += 1
            if pending:
                await asyncio.wait(pending)
    finally:
        await context.repo.close()
    elapsed = time.perf_counter() - started
    click.echo(f"loaded {ok} resources ({failed} rejected) in {elapsed:.1f} s, {ok / max(elapsed, 1e-9):.0f}/s")
    return 1 if failed else 0


# the authorization server's clients and users (fhir_server/auth/cli.py)
from fhir_server.auth.cli import clients as _clients_group  # noqa: E402
from fhir_server.auth.cli import users as _users_group  # noqa: E402
from fhir_server.jobs.cli import beat as _beat_command  # noqa: E402
from fhir_server.jobs.cli import worker as _worker_command  # noqa: E402
from fhir_server.workflows.scheduling.cli import scheduling as _scheduling_group  # noqa: E402

main.add_command(_clients_group, "clients")
main.add_command(_users_group, "users")
main.add_command(_scheduling_group, "scheduling")
main.add_command(_worker_command, "worker")
main.add_command(_beat_command, "beat")


@main.command(help="Copy a store, with every version, to another backend: "
                   "infirmary migrate --from sqlite:PATH --to mongodb://HOST/DB?replicaSet=NAME (either direction). "
                   "The target must be empty.")
@click.option("--from", "source", required=True, metavar="STORE", help="sqlite:PATH or a mongodb:// URL")
@click.option("--to", "target", required=True, metavar="STORE", help="sqlite:PATH or a mongodb:// URL")
def migrate(source: str, target: str) -> None:
    from fhir_server.storage.migrate import MigrationError, Store
    from fhir_server.storage.migrate import migrate as run_migration

    settings = Settings()
    shown: dict[str, int] = {}

    def progress(stage: str, done: int) -> None:
        if done - shown.get(stage, -10_000) >= 10_000:
            shown[stage] = done
            click.echo(f"  {stage}: {done} versions", err=True)

    try:
        click.echo(f"migrating {Store.parse(source).describe()} -> {Store.parse(target).describe()}")
        report = asyncio.run(run_migration(source, target, settings, progress))
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"copied {report.versions} versions of {report.resources} resources "
               f"({report.resources - report.deleted} current, {report.deleted} deleted)")
    for rtype, count in sorted(report.by_type.items()):
        click.echo(f"  {rtype}: {count}")


# HL7 v2: the MLLP listener on its own and the message log (hl7_adapters/cli.py)
from hl7_adapters.cli import hl7 as _hl7_group  # noqa: E402
from hl7_adapters.cli import mllp as _mllp_command  # noqa: E402

main.add_command(_mllp_command, "mllp")
main.add_command(_hl7_group, "hl7")

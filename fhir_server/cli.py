"""The ``infirmary`` command line: serve, load."""

from __future__ import annotations

import asyncio
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
    if settings.demo:
        loaded = asyncio.run(_load_demo(settings))
        click.echo(f"demo data: {loaded} resources loaded" if loaded else "demo data: store not empty, skipped")
    base = f"http://{settings.server.host}:{settings.server.port}"
    click.echo(f"Infirmary {__version__} — FHIR R4 (4.0.1)")
    click.echo(f"  FHIR API:           {base}/fhir")
    click.echo(f"  CapabilityStatement: {base}/fhir/metadata")
    click.echo(f"  API explorer:       {base}/docs")
    click.echo(f"  store:              {settings.sqlite_file()}")
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level=settings.log_level,
        access_log=False,
    )


async def _load_demo(settings: Settings) -> int:
    from fhir_server.app import create_app
    from fhir_server.demo import load_demo

    app = create_app(settings)
    context = app.state.fhir
    await context.repo.open()
    try:
        if await context.repo.count() > 0:
            return 0
        return await load_demo(context.resources)
    finally:
        await context.repo.close()


def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file())
        else:
            yield path


def _resources(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_bytes()
    if path.suffix == ".ndjson":
        for line in text.splitlines():
            if line.strip():
                yield jsonio.loads(line)
        return
    value = jsonio.loads(text)
    if isinstance(value, dict) and value.get("resourceType") == "Bundle" and value.get("type") in (
        "collection", "searchset", "history"
    ):
        for entry in value.get("entry", []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
        return
    if isinstance(value, dict) and value.get("resourceType") == "Bundle" and value.get("type") in (
        "transaction", "batch"
    ):
        raise click.ClickException(
            f"{path}: {value.get('type')} Bundles need the Bundle interactions, which this version does not "
            "have yet; load resources, ndjson or collection Bundles"
        )
    yield value


@main.command(help="Load FHIR resources (JSON files, ndjson, collection Bundles; directories recursively).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def load(paths: tuple[Path, ...], data_dir: Path | None) -> None:
    settings = _apply_env(FHIR_DATA_DIR=data_dir)
    sys.exit(asyncio.run(_load(settings, list(_files(paths)))))


async def _load(settings: Settings, files: list[Path]) -> int:
    from fhir_server.app import create_app

    context = create_app(settings).state.fhir
    await context.repo.open()
    ok = failed = 0
    started = time.perf_counter()
    try:
        with click.progressbar(files, label="loading", show_pos=True) as bar:
            for path in bar:
                for resource in _resources(path):
                    try:
                        body = jsonio.dumps(resource)
                        rtype = str(resource.get("resourceType", ""))
                        if resource.get("id"):
                            await context.resources.update(rtype, str(resource["id"]), body)
                        else:
                            await context.resources.create(rtype, body)
                        ok += 1
                    except FhirError as exc:
                        failed += 1
                        click.echo(f"\n{path}: {resource.get('resourceType')}/{resource.get('id', '')}: "
                                   f"{exc.diagnostics}", err=True)
    finally:
        await context.repo.close()
    elapsed = time.perf_counter() - started
    click.echo(f"loaded {ok} resources ({failed} rejected) in {elapsed:.1f} s, {ok / max(elapsed, 1e-9):.0f}/s")
    return 1 if failed else 0

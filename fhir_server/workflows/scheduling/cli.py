"""``infirmary scheduling …``: seed the specialties and (re)generate slots, working on the store directly (the
same code the jobs run; a running server picks the results up at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from fhir_server.settings import Settings


def _settings(data_dir: Path | None) -> Settings:
    return Settings() if data_dir is None else Settings(data_dir=data_dir)


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[str]]) -> str:
    from fhir_server.app import create_app

    app = create_app(settings)
    context = app.state.fhir
    await context.repo.open()
    try:
        return await work(context)
    finally:
        await context.repo.close()


_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="the store's directory [default: FHIR_DATA_DIR or ./data]")


@click.group(help="Specialties, schedules and slots (docs/scheduling.md).")
def scheduling() -> None:
    pass


@scheduling.command("seed", help="Write one HealthcareService per specialty (SNOMED CT practice-setting codes).")
@_DATA_DIR
@click.option("--organization", default=None, help="Organization id providing the services")
def seed(data_dir: Path | None, organization: str | None) -> None:
    from fhir_server.workflows.scheduling.specialties import seed_specialties

    async def work(context: Any) -> str:
        return f"{await seed_specialties(context.resources, organization)} specialties written"

    click.echo(asyncio.run(_with_store(_settings(data_dir), work)))


@scheduling.command("generate", help="Generate the slots of PractitionerRoles (all of them without --role).")
@_DATA_DIR
@click.option("--role", "roles", multiple=True, help="PractitionerRole id (repeatable)")
def generate(data_dir: Path | None, roles: tuple[str, ...]) -> None:
    from fhir_server.workflows.scheduling import Scheduling
    from fhir_server.workflows.scheduling._store import search_all

    settings = _settings(data_dir)

    async def work(context: Any) -> str:
        scheduling = Scheduling.of(context.resources, context.search, settings.scheduling, None)
        ids = list(roles) or [c.resource["id"] async for c in search_all(scheduling.deps, "PractitionerRole", [])]
        lines = []
        for rid in ids:
            done = await scheduling.generator.generate(rid)
            lines.append(f"PractitionerRole/{rid}: {done.created} created, {done.reopened} reopened, "
                         f"{done.withdrawn} withdrawn, {done.updated} updated, {done.untouched_booked} booked kept")
        return "\n".join(lines) or "no PractitionerRoles"

    click.echo(asyncio.run(_with_store(settings, work)))

"""``infirmary worker`` and ``infirmary beat``: the Celery worker and scheduler of the production deployment
(``FHIR_JOBS__BACKEND=celery``, ``FHIR_JOBS__REDIS_URL``)."""

from __future__ import annotations

from pathlib import Path

import click

from fhir_server.settings import Settings


@click.command(help="Run a Celery worker for the background jobs (FHIR_JOBS__BACKEND=celery, Redis broker).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="worker processes [default: FHIR_JOBS__WORKER_CONCURRENCY]")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int | None, pool: str, loglevel: str) -> None:
    from fhir_server.jobs.celery_app import create_celery

    settings = Settings()
    app = create_celery(settings)
    app.worker_main(["worker", f"--loglevel={loglevel}", f"--pool={pool}",
                     f"--concurrency={concurrency or settings.jobs.worker_concurrency}", "--without-gossip",
                     "--without-mingle"])


@click.command(help="Run Celery beat: sends the periodic jobs (the notification sweep, …) to the workers.")
@click.option("--schedule", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="beat's state file [default: <data_dir>/celerybeat-schedule]")
@click.option("--loglevel", default="INFO", show_default=True)
def beat(schedule: Path | None, loglevel: str) -> None:
    from fhir_server.jobs.celery_app import create_celery

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    app.start(["beat", f"--loglevel={loglevel}", "-s", str(schedule or settings.data_dir / "celerybeat-schedule")])

"""``create_app(settings)``: builds everything once — definitions, validator, repository, services, routes."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import WebSocketRoute

from fhir_server import __version__
from fhir_server.api import errors as api_errors
from fhir_server.api import rest, subscriptions_ws
from fhir_server.api.access import AccessMiddleware
from fhir_server.api.context import FhirContext
from fhir_server.api.cors import ApiCorsMiddleware
from fhir_server.auth.audit import VARYING as AUDIT_VARYING
from fhir_server.auth.audit import AuditSink, AuditWriter
from fhir_server.auth.audit_process import AuditProcess
from fhir_server.auth.patients import FhirPatientDirectory
from fhir_server.auth.reach import ReachCompiler
from fhir_server.auth.routes import routes as auth_routes
from fhir_server.auth.security import Security
from fhir_server.auth.service import AuthService
from fhir_server.auth.stamps import OWNER_PARAM
from fhir_server.definitions import load_definitions
from fhir_server.indexing.extract import Indexer
from fhir_server.indexing.shared_parts import SharedPartIndexer
from fhir_server.jobs.clock import Clock
from fhir_server.jobs.context import JobContext
from fhir_server.jobs.hooks import PostWriteHook
from fhir_server.jobs.journal import JobJournal
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.jobs.wiring import build_queue, load_modules
from fhir_server.search.registry import SearchRegistry
from fhir_server.services.bulk_export import BulkExport
from fhir_server.services.bundles import BundleService
from fhir_server.services.everything import EverythingService
from fhir_server.services.history import Paging
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.services.search_params import SearchParameters
from fhir_server.services.search_params import check as check_search_parameter
from fhir_server.services.validate import Validator
from fhir_server.settings import Settings
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import Repository
from fhir_server.workflows.subscriptions import SubscriptionService
from hl7_adapters.service import Hl7Service


def build_repository(settings: Settings) -> Repository:
    if settings.storage.backend == "sqlite":
        from fhir_server.storage.sqlite.repository import SQLiteRepository

        return SQLiteRepository(
            settings.sqlite_file(),
            busy_timeout_ms=settings.storage.sqlite_busy_timeout_ms,
            write_batch_max=settings.storage.write_batch_max,
            checkpoint_interval_ms=settings.storage.sqlite_checkpoint_interval_ms,
            wal_max_mb=settings.storage.sqlite_wal_max_mb,
        )
    if settings.storage.backend in ("mongodb", "mongo"):
        from fhir_server.storage.mongo.repository import MongoRepository

        return MongoRepository(settings.storage.mongodb_url,
                               transactions=settings.storage.mongodb_require_transactions)
    raise ValueError(f"unknown storage backend {settings.storage.backend!r}")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """``clock``: the clock background jobs read (tests pass a ``ManualClock``)."""
    settings = settings or Settings()
    defs = load_definitions()
    repo = build_repository(settings)
    base_urls = (settings.server.base_url,) if settings.server.base_url else ()
    indexer = Indexer.from_definitions(defs, base_urls)
    indexer.add(OWNER_PARAM)  # Subscription.owner, stamped by the scoped repository (auth/stamps.py)
    registry = SearchRegistry(indexer, defs.resource_types)
    paging = Paging(settings.paging.default_count, settings.paging.max_count)
    runner = InProcessRunner(settings=settings.jobs)
    if settings.jobs.backend == "inprocess":
        runner.journal = JobJournal(settings.data_dir / "jobs.db")  # opened at start: queued jobs survive a restart
    jobs = build_queue(settings, runner, clock)
    resources = ResourceService(repo, defs, Validator(defs), indexer, registry, base_urls)
    search_params = SearchParameters(repo, indexer, runner)
    search_params.services = resources
    resources.before_write["SearchParameter"] = check_search_parameter
    resources.after_write.append(search_params.after_write)
    search = SearchService(repo, registry, defs, paging, settings.search.total_budget_ms)
    context = FhirContext(
        settings=settings,
        defs=defs,
        repo=repo,
        resources=resources,
        search=search,
        paging=paging,
        started=format_instant(time.time()),
        runner=runner,
        jobs=jobs,
        search_params=search_params,
        bundles=BundleService(resources, settings.bundles.max_entries),
        bulk_export=BulkExport(
            repo, resources, search, defs, runner, settings.export, settings.export_dir(),
        ),
        everything=EverythingService(repo, resources, registry, defs, paging, settings.search.total_budget_ms),
    )

    auth = AuthService(settings, defs.resource_types, FhirPatientDirectory(context.search, repo))
    # AuditEvents are indexed for every search parameter, not for full text (_content): writing them stays cheap
    writer = AuditWriter(repo, SharedPartIndexer(indexer, "AuditEvent", AUDIT_VARYING).extract,
                         batch_max=settings.auth.audit_batch_max,
                         queue_max=settings.auth.audit_queue_max, spool=settings.data_dir / "audit-spool.ndjson")
    compiler = ReachCompiler(defs, registry, indexer, base_urls)
    audit: AuditSink = writer
    if settings.auth.enabled and settings.auth.audit_writer == "process":
        audit = AuditProcess(settings, compiler.linked_types, writer)
        resources.after_write.append(audit.after_write)
    security = Security(auth, compiler, repo, defs.resource_types, audit, enabled=settings.auth.enabled)
    context.security = security
    context.bulk_export.job_repository = security.job_repository
    subscriptions = SubscriptionService(repo, resources, registry, settings.subscriptions, runner, base_urls)
    subscriptions.acting = security.acting if settings.auth.enabled else None
    resources.before_write["Subscription"] = subscriptions.check
    context.subscriptions = subscriptions
    runner.bind(context)
    load_modules()  # task functions, periodic tasks and post-write reactions (fhir_server/jobs/wiring.py)
    resources.after_write.append(PostWriteHook(lambda: JobContext(context, context.jobs, context.jobs.clock)))
    hl7 = Hl7Service(context)  # the MLLP listener (FHIR_HL7__ENABLED); outbound orders are tasks (wiring.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the event loop and the store's writer thread share the GIL; a shorter switch interval stops one from
        # starving the other for the default 5 ms after every blocking call (measured: docs/benchmarks.md)
        sys.setswitchinterval(settings.server.switch_interval_ms / 1000)
        await repo.open()
        await search_params.load()
        await run_in_threadpool(auth.open)
        await audit.start()
        context.bulk_export.start()
        await runner.start(periodic=settings.jobs.backend == "inprocess")
        await subscriptions.start()
        await hl7.start()
        # what was built at start (definitions, indexer plans, routes: ~140,000 objects) is never garbage: moved out of
        # the collector's reach, a full collection no longer walks it and stalls requests for tens of ms
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await subscriptions.stop()
            await hl7.stop()  # in-flight HL7 messages finish (and are acknowledged) while the store is open
            context.bulk_export.stop()
            await audit.stop()
            await runner.close()
            await repo.close()
            auth.close()

    telemetry = settings.server.opentelemetry
    app = FastAPI(
        title="Infirmary FHIR R4 server",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI looks up the global OpenTelemetry providers on every request unless told there is nothing to do
        telemetry={"tracing": telemetry, "metrics": telemetry, "logs": telemetry},
    )
    app.state.fhir = context
    api_errors.install(app)
    app.state.auth = auth
    app.state.security = security
    app.state.hl7 = hl7
    app.add_middleware(AccessMiddleware)  # tokens, scoped services and audit on every /fhir request
    if settings.server.cors_origins:  # outside the access middleware: preflights carry no token
        app.add_middleware(ApiCorsMiddleware, origins=settings.server.cors_origins)
    app.router.routes.extend(auth_routes())  # before the /fhir mount, which takes every /fhir/... path
    app.router.routes.append(WebSocketRoute(subscriptions_ws.PATH, subscriptions_ws.endpoint))
    app.mount("/fhir", rest.router)
    app.add_route("/fhir", rest.base_endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return RedirectResponse("/fhir/metadata")

    return app

"""What the routers need from the application: services and the base URL.

With authorization on, a route's services are made for its request on a scoped repository (``services``): the
token's scopes, roles and patient context apply to everything they read and write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from fhir_server.definitions import Definitions
from fhir_server.errors import InternalError
from fhir_server.jobs.registry import JobQueue
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.services.bulk_export import BulkExport
from fhir_server.services.bundles import BundleService
from fhir_server.services.everything import EverythingService
from fhir_server.services.history import Paging
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.services.search_params import SearchParameters
from fhir_server.settings import Settings
from fhir_server.storage.base import Repository

if TYPE_CHECKING:
    from fhir_server.api.access import RequestAccess

ACCESS_KEY = "infirmary.access"  # the ASGI scope key of a request's RequestAccess (fhir_server.api.access)

_S = TypeVar("_S")


class Services:
    """The services one request uses, on the scoped repository when authorization is on.  Each is made when
    first used (shallow copies of the application's: registries, validators and hooks are shared).  Plain
    attributes, not ``functools.cached_property`` (which takes a lock on every first use: once per request)."""

    __slots__ = ("_bundles", "_everything", "_resources", "_search", "fhir", "repo")

    def __init__(self, fhir: FhirContext, repo: Repository) -> None:
        self.fhir = fhir
        self.repo = repo
        scoped = repo is not fhir.repo
        self._resources: ResourceService | None = None if scoped else fhir.resources
        self._search: SearchService | None = None if scoped else fhir.search
        self._everything: EverythingService | None = None if scoped else fhir.everything
        self._bundles: BundleService | None = None if scoped else fhir.bundles

    @property
    def resources(self) -> ResourceService:
        if self._resources is None:
            self._resources = _with(self.fhir.resources, repo=self.repo)
        return self._resources

    @property
    def search(self) -> SearchService:
        if self._search is None:
            self._search = _with(self.fhir.search, repo=self.repo)
        return self._search

    @property
    def everything(self) -> EverythingService:
        if self._everything is None:
            self.fhir.everything.shape()  # computed once on the application's service, then shared by the copies
            self._everything = _with(self.fhir.everything, repo=self.repo, resources=self.resources)
        return self._everything

    @property
    def bundles(self) -> BundleService:
        if self._bundles is None:
            self._bundles = _with(self.fhir.bundles, resources=self.resources)
        return self._bundles


def _with(service: _S, **changes: Any) -> _S:
    """A shallow copy of a service with some attributes replaced (cheaper than copy.copy on every request)."""
    clone: _S = object.__new__(type(service))
    clone.__dict__.update(service.__dict__)
    clone.__dict__.update(changes)
    return clone


@dataclass
class FhirContext:
    settings: Settings
    defs: Definitions
    repo: Repository
    resources: ResourceService
    search: SearchService
    paging: Paging
    started: str
    runner: InProcessRunner
    jobs: JobQueue  # where tasks are enqueued: the runner itself (embedded) or Celery
    search_params: SearchParameters
    bundles: BundleService
    bulk_export: BulkExport
    everything: EverythingService
    security: Any = None  # fhir_server.auth.security.Security when authorization is on
    subscriptions: Any = None  # fhir_server.workflows.subscriptions.SubscriptionService

    def unscoped(self) -> Services:
        return Services(self, self.repo)

    def services_for(self, repo: Repository) -> Services:
        return Services(self, repo)

    def base_url(self, request: Request) -> str:
        if self.settings.server.base_url:
            return self.settings.server.base_url.rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}/fhir"


def ctx(request: Request) -> FhirContext:
    context: FhirContext = request.app.state.fhir
    return context


def services(request: Request) -> Services:
    """The services for this request: scoped to its access token when authorization is on."""
    access: RequestAccess | None = request.scope.get(ACCESS_KEY)
    if access is not None:
        return access.services()
    context = ctx(request)
    if context.security is not None and context.security.enabled:
        raise InternalError("this FHIR request was not authenticated")  # fail closed: a route outside /fhir?
    return context.unscoped()

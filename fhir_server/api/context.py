"""What the routers need from the application: services and the base URL."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from fhir_server.definitions import Definitions
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
    search_params: SearchParameters
    bundles: BundleService
    bulk_export: BulkExport
    everything: EverythingService

    def base_url(self, request: Request) -> str:
        if self.settings.server.base_url:
            return self.settings.server.base_url.rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}/fhir"


def ctx(request: Request) -> FhirContext:
    context: FhirContext = request.app.state.fhir
    return context

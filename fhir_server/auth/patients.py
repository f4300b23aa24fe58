"""The patient picker's view of the FHIR store: find patients by name, look one up.  The authorization server
reads these itself (not through a user's token): only signed-in staff users see the picker."""

from __future__ import annotations

from typing import Any, Protocol

from fhir_server import jsonio
from fhir_server.auth.pages import PatientChoice
from fhir_server.errors import FhirError
from fhir_server.services.search import SearchService
from fhir_server.storage.base import Repository


class PatientDirectory(Protocol):
    async def find(self, text: str, limit: int, base_url: str) -> list[PatientChoice]: ...

    async def get(self, patient_id: str) -> PatientChoice | None: ...


def _choice(resource: dict[str, Any]) -> PatientChoice:
    name = ""
    names = resource.get("name")
    if isinstance(names, list) and names and isinstance(names[0], dict):
        first = names[0]
        if first.get("text"):
            name = str(first["text"])
        else:
            given = " ".join(str(g) for g in first.get("given", []) if isinstance(g, str))
            name = f"{given} {first.get('family', '')}".strip()
    return PatientChoice(str(resource.get("id", "")), name or str(resource.get("id", "")),
                         str(resource.get("birthDate", "")))


class FhirPatientDirectory:
    def __init__(self, search: SearchService, repo: Repository) -> None:
        self.search = search
        self.repo = repo

    async def find(self, text: str, limit: int, base_url: str) -> list[PatientChoice]:
        params = [("_count", str(limit)), ("active:not", "false")]
        if text.strip():
            params.append(("name", text.strip()))
        try:
            bundle = jsonio.loads(await self.search.search("Patient", params, base_url=base_url))
        except FhirError:
            return []
        return [_choice(e["resource"]) for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]

    async def get(self, patient_id: str) -> PatientChoice | None:
        try:
            stored = await self.repo.read("Patient", patient_id)
        except FhirError:
            return None
        if stored is None or stored.body is None:
            return None
        return _choice(jsonio.loads(stored.body))

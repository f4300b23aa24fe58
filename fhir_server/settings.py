"""All configuration: one pydantic-settings class, ``FHIR_`` prefix, nested groups separated by ``__``.

Examples: ``FHIR_STORAGE__BACKEND=sqlite``, ``FHIR_SERVER__PORT=8080``, ``FHIR_DATA_DIR=/var/lib/infirmary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    switch_interval_ms: float = Field(1.0, gt=0, description="Python's thread switch interval (GIL hand-over)")
    base_url: str | None = Field(
        None, description="Public base URL of the FHIR API (e.g. https://fhir.example.org/fhir); derived from the request when unset"
    )


class StorageSettings(BaseModel):
    backend: Literal["sqlite"] = "sqlite"
    sqlite_path: Path | None = Field(None, description="SQLite file; default <data_dir>/infirmary.db")
    sqlite_busy_timeout_ms: int = 10_000
    write_batch_max: int = Field(256, ge=1, description="most write requests grouped into one commit")


class PagingSettings(BaseModel):
    default_count: int = Field(50, ge=1)
    max_count: int = Field(1000, ge=1)


class SearchSettings(BaseModel):
    total_budget_ms: int = Field(
        25, ge=0, description="without _total=accurate, Bundle.total is left out when counting takes longer"
    )


class BundleSettings(BaseModel):
    max_entries: int = Field(10_000, ge=1, description="most entries accepted in one batch or transaction Bundle")


class ExportSettings(BaseModel):
    """Bulk Data export ($export): where the ndjson files go and how long they are kept."""

    dir: Path | None = Field(None, description="where export files are written; default <data_dir>/exports")
    file_expiry_s: int = Field(3600, ge=1, description="seconds a completed export's files are kept")
    max_resources_per_file: int = Field(100_000, ge=1, description="resources per ndjson file before a new one")
    max_concurrent: int = Field(1, ge=1, description="export jobs running at once per process; others queue")
    cleanup_interval_s: float = Field(60.0, gt=0, description="how often expired export files are looked for")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("./data")
    log_level: str = "info"
    demo: bool = Field(False, description="load the demo data set at start when the store is empty")
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    paging: PagingSettings = PagingSettings()
    search: SearchSettings = SearchSettings()
    bundles: BundleSettings = BundleSettings()
    export: ExportSettings = ExportSettings()

    def sqlite_file(self) -> Path:
        return self.storage.sqlite_path or self.data_dir / "infirmary.db"

    def export_dir(self) -> Path:
        return self.export.dir or self.data_dir / "exports"

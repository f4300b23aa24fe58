"""All configuration: one pydantic-settings class, ``FHIR_`` prefix, nested groups separated by ``__``.

Examples: ``FHIR_STORAGE__BACKEND=sqlite``, ``FHIR_SERVER__PORT=8080``, ``FHIR_DATA_DIR=/var/lib/infirmary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    switch_interval_ms: float = Field(1.0, gt=0, description="Python's thread switch interval (GIL hand-over)")
    base_url: str | None = Field(
        None, description="Public base URL of the FHIR API (e.g. https://fhir.example.org/fhir); derived from the request when unset"
    )
    cors_origins: list[str] = Field(
        ["*"], description="origins whose browser apps may call the FHIR API and the token endpoints (CORS); "
        "[] turns CORS off"
    )
    opentelemetry: bool = Field(
        False, description="FastAPI's native OpenTelemetry spans, metrics and logs, exported through the "
        "OpenTelemetry SDK the process is configured with (e.g. opentelemetry-instrument); off: no per-request check"
    )


class StorageSettings(BaseModel):
    backend: Literal["sqlite", "mongodb", "mongo"] = Field(
        "sqlite", description="sqlite (embedded, the default) or mongodb (production; \"mongo\" is an alias)"
    )
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:27017/infirmary?replicaSet=rs0",
        description="MongoDB connection URL: hosts, replica set, credentials, TLS, database (the path) and any "
        "driver option; w=majority, journal=true, readConcernLevel=majority and retryable reads/writes are the "
        "defaults when the URL does not set them",
    )
    mongodb_require_transactions: bool = Field(
        True, description="refuse to start without multi-document transactions (a standalone server); turn off only "
        "for MongoDB-compatible test servers: writes are then not atomic"
    )
    sqlite_path: Path | None = Field(None, description="SQLite file; default <data_dir>/infirmary.db")
    sqlite_busy_timeout_ms: int = 10_000
    write_batch_max: int = Field(256, ge=1, description="most write requests grouped into one commit")
    sqlite_checkpoint_interval_ms: int = Field(
        500, ge=10, description="how often a background thread copies the WAL into the database file"
    )
    sqlite_wal_max_mb: int = Field(
        256, ge=4, description="WAL size beyond which the checkpoint waits for the writer to bound it"
    )


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


class SchedulingSettings(BaseModel):
    """Appointments: slot generation from PractitionerRole availability, $find and holds (docs/scheduling.md)."""

    timezone: str = Field("UTC", description="IANA time zone of availableTime times (the hospital's local time)")
    horizon_days: int = Field(90, ge=1, le=731, description="how far ahead slots are generated")
    slot_minutes: int = Field(30, ge=5, le=480, description="slot length when the role does not say")
    hold_minutes: int = Field(10, ge=1, le=1440, description="how long a $hold keeps a slot by default")
    hold_max_minutes: int = Field(60, ge=1, le=1440, description="the longest hold a client may ask for")
    find_default_days: int = Field(14, ge=1, le=366, description="$find looks this far ahead without an end")
    find_max_count: int = Field(100, ge=1, le=1000, description="the most proposed appointments in one $find page")
    regenerate_interval_s: float = Field(
        86_400.0, gt=0, description="how often every role's slots are extended to the rolling horizon"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (such as Europe/London)") from None
        return value


class AuthSettings(BaseModel):
    """The SMART on FHIR authorization server (docs/auth.md)."""

    enabled: bool = Field(True, description="require access tokens on the FHIR API; false is for local development "
                                            "only: the server then listens on loopback addresses only")
    issuer: str | None = Field(None, description="issuer of tokens; default the FHIR base URL")
    secret: str | None = Field(None, description="HMAC secret for cookies and CSRF; default a random one kept in "
                                                 "the key file")
    store: Literal["sqlite", "mongodb", "mongo"] | None = Field(
        None, description="where users, clients, tokens, revocations and the signing keys are kept: sqlite (a file "
        "of this host) or mongodb (shared by every API host; FHIR_STORAGE__MONGODB_URL); default mongodb when "
        "FHIR_STORAGE__BACKEND is mongodb, else sqlite")
    mongodb_database: str | None = Field(None, description="mongodb auth store: the database of its auth_* "
                                                           "collections; default the FHIR database")
    store_path: Path | None = Field(None, description="auth state SQLite file; default <data_dir>/auth.db")
    keys_path: Path | None = Field(None, description="signing keys file; default <data_dir>/auth-keys.json")
    access_token_lifetime_s: int = Field(3600, ge=60, le=3600, description="user access tokens (at most 1 hour)")
    system_access_token_lifetime_s: int = Field(300, ge=60, le=3600, description="Backend Services tokens")
    code_lifetime_s: int = Field(60, ge=10, le=600, description="authorization codes")
    offline_refresh_lifetime_s: int = Field(30 * 86_400, ge=3600, description="offline_access refresh tokens")
    session_lifetime_s: int = Field(12 * 3600, ge=300, description="login sessions (and online_access tokens)")
    launch_lifetime_s: int = Field(600, ge=30, description="EHR launch contexts")
    login_max_failures: int = Field(5, ge=1, description="failed logins in a row that lock an account")
    lockout_s: int = Field(900, ge=1, description="how long a locked account stays locked")
    throttle_window_s: int = Field(300, ge=1, description="window for counting failed logins per client address")
    throttle_max_failures: int = Field(20, ge=1, description="failed logins per address in the window before "
                                                             "that address is refused")
    client_assertion_max_lifetime_s: int = Field(300, ge=1, description="longest exp - now of a client assertion")
    dynamic_registration: bool = Field(False, description="open RFC 7591 dynamic client registration")
    allow_http_jwks_uri: bool = Field(False, description="accept http:// client JWKS URLs (development only)")
    jwks_cache_s: int = Field(300, ge=0, description="how long a client's JWKS fetched by URL is reused")
    break_glass_minutes: int = Field(30, ge=1, description="default length of a break-glass grant")
    break_glass_max_minutes: int = Field(240, ge=1, description="longest break-glass grant")
    audit_batch_max: int = Field(500, ge=1, description="most AuditEvents written in one commit")
    audit_queue_max: int = Field(50_000, ge=1, description="AuditEvents waiting to be written before requests wait")
    audit_writer: Literal["process", "inprocess"] = Field(
        "process", description="where AuditEvents are built, indexed and stored: a child process beside each API "
        "process (process), or the API process itself (inprocess)")
    audit_writer_nice: int = Field(10, ge=0, le=19, description="the audit writer process's niceness: it yields "
                                   "the CPU to the API processes and catches up when they leave some over")


class SubscriptionSettings(BaseModel):
    """FHIR Subscriptions (docs/subscriptions.md)."""

    retry_backoff_s: float = Field(1.0, gt=0, description="first delay before a failed notification is tried again; "
                                                           "doubles each time")
    retry_backoff_max_s: float = Field(300.0, gt=0, description="longest delay between two delivery attempts")
    retry_max_age_s: float = Field(86_400.0, gt=0, description="how long a notification keeps being retried")
    delivery_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one rest-hook delivery")
    allow_http_loopback: bool = Field(False, description="accept http:// rest-hook endpoints on loopback addresses "
                                                         "(development and tests only)")
    websocket_heartbeat_s: float = Field(30.0, ge=0, description="seconds between heartbeat messages on a bound "
                                                                 "websocket (0: none)")
    index_refresh_s: float = Field(5.0, ge=0, description="how often a server process picks up Subscriptions "
                                                          "written by other processes (0: never)")
    websocket_feed_s: float = Field(0.25, ge=0, description="how often a process with websocket subscribers bound "
                                    "reads the writes other processes committed (0: never)")


class JobsSettings(BaseModel):
    """Background jobs (docs/jobs.md): the in-process runner (embedded default) or Celery with Redis."""

    backend: Literal["inprocess", "celery"] = Field(
        "inprocess", description="inprocess (jobs run in the server process) or celery (workers, Redis broker)")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker and job-key store (celery)")
    concurrency: int = Field(4, ge=1, description="jobs running at once in the in-process runner")
    max_attempts: int = Field(8, ge=1, description="attempts of a failing job before it is given up")
    backoff_s: float = Field(30.0, ge=0, description="delay before the first retry; doubles after each failure")
    backoff_max_s: float = Field(3600.0, ge=0, description="longest delay between two attempts")
    sweep_interval_s: float = Field(60.0, gt=0, description="how often due notifications are looked for")
    key_ttl_s: int = Field(86_400, ge=60, description="celery: how long a job key keeps duplicates out")
    worker_concurrency: int = Field(2, ge=1, description="celery: processes per `infirmary worker`")


class NotifySettings(BaseModel):
    """Notification channels (docs/notifications.md): email over SMTP, SMS through a gateway, in-app."""

    smtp_host: str | None = Field(None, description="SMTP server; unset: no email channel")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (upgrade on the submission port), tls (implicit TLS, port 465) or none")
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("Infirmary <no-reply@localhost>", description="From address of notification emails")
    smtp_timeout_s: float = Field(30.0, gt=0)
    smtp_ca_file: Path | None = Field(None, description="CA bundle to verify the SMTP server (default: system)")
    sms_url: str | None = Field(None, description="SMS gateway URL (gateway) or API base URL (twilio); unset: no "
                                                  "SMS channel")
    sms_kind: Literal["gateway", "twilio"] = Field(
        "gateway", description="gateway: POST JSON {to, body, reference} with a bearer token; twilio: the "
        "Twilio Messages API (form-encoded, basic auth)")
    sms_token: SecretStr | None = Field(None, description="gateway bearer token, or the Twilio auth token")
    sms_account_sid: str | None = Field(None, description="twilio: the account SID (basic-auth user)")
    sms_from: str | None = Field(None, description="twilio: the sending number (From)")
    sms_timeout_s: float = Field(15.0, gt=0)
    reminder_offsets: str = Field("24h,2h", description="appointment reminders before the start, e.g. 24h,2h,30m")
    default_language: str = Field("en", description="template language when the patient states none we have")
    medication_horizon_days: int = Field(7, ge=1, le=90, description="medication reminders are scheduled this "
                                         "many days ahead (extended daily)")


class LabEndpoint(BaseModel):
    """One laboratory information system that receives orders over MLLP (``FHIR_HL7__LABS`` is a JSON map)."""

    host: str
    port: int = Field(ge=1, le=65535)
    message: Literal["ORM^O01", "OML^O21"] = Field("OML^O21", description="the order message this lab takes")
    version: str = Field("2.5.1", description="HL7 version written in MSH-12")
    receiving_application: str = ""
    receiving_facility: str = ""
    tls: bool = Field(False, description="connect with TLS")
    tls_ca: Path | None = Field(None, description="CA file to verify the lab's certificate (default: system)")


class Hl7Settings(BaseModel):
    """HL7 v2: the MLLP listener, inbound messages and outbound lab orders (docs/hl7v2.md)."""

    enabled: bool = Field(True, description="start the MLLP listener with `infirmary serve`")
    host: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535, description="MLLP port (0: any free port)")
    max_connections: int = Field(64, ge=1, description="open MLLP connections; more are closed at once")
    idle_timeout_s: float = Field(300.0, gt=0, description="a connection with no message for this long is closed")
    read_timeout_s: float = Field(30.0, gt=0, description="a message started but not finished in this time is "
                                                          "dropped and its connection closed")
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest MLLP frame accepted")
    shutdown_grace_s: float = Field(10.0, ge=0, description="time in-flight messages get to finish at shutdown")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: MLLP over TLS when set")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(None, description="require client certificates signed by this CA")
    identity: str = Field("lab-interface", description="the system identity (client id) the listener writes "
                                                       "as; AuditEvents name it and the MLLP sender")
    scopes: str = Field("system/*.cruds", description="what the listener's identity may do (SMART v2 scopes)")
    application: str = Field("INFIRMARY", description="MSH-3 of messages this server sends")
    facility: str = Field("HOSPITAL", description="MSH-4 of messages this server sends")
    labs: dict[str, LabEndpoint] = Field(default_factory=dict, description="LIS endpoints by name")
    default_lab: str | None = Field(None, description="the lab of a ServiceRequest that names none")
    send_orders: bool = Field(True, description="send new laboratory ServiceRequests to their lab")
    order_max_attempts: int = Field(6, ge=1, description="tries to deliver one order before the Task fails")
    order_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles each time")
    order_backoff_max_s: float = Field(300.0, gt=0, description="longest retry delay")
    ack_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the lab's ACK")


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
    auth: AuthSettings = AuthSettings()
    jobs: JobsSettings = JobsSettings()
    notify: NotifySettings = NotifySettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    subscriptions: SubscriptionSettings = SubscriptionSettings()
    hl7: Hl7Settings = Hl7Settings()

    def sqlite_file(self) -> Path:
        return self.storage.sqlite_path or self.data_dir / "infirmary.db"

    def export_dir(self) -> Path:
        return self.export.dir or self.data_dir / "exports"

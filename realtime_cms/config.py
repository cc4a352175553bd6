"""Settings read from `RCMS_*` environment variables (and an optional `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from realtime_cms.errors import ConfigurationError

DEFAULT_SECRET = "insecure-embedded-default-secret-change-me"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///realtime_cms.sqlite3"


class Settings(BaseSettings):
    """Everything the server can be told; defaults give the embedded single-machine mode."""

    model_config = SettingsConfigDict(env_prefix="RCMS_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Prefix of every Redis key and channel, so installations can share one Redis.
    redis_prefix: str = "rcms:"
    secret_key: str = DEFAULT_SECRET
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8080", "http://localhost:8080"]
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Public base URL used in links sent by mail (reset, verification).
    public_url: str = ""
    # Bodies larger than this are refused with 413 before any handler runs.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    session_idle_seconds: int = Field(default=2 * 3600, ge=60)
    remember_ttl_days: int = Field(default=30, ge=1)
    reset_token_ttl_seconds: int = Field(default=3600, ge=60)
    verify_token_ttl_seconds: int = Field(default=48 * 3600, ge=60)
    # Attempts allowed per window, keyed per account and per client address.
    login_rate_limit: int = Field(default=10, ge=1)
    login_ip_rate_limit: int = Field(default=100, ge=1)
    reset_rate_limit: int = Field(default=5, ge=1)
    reset_ip_rate_limit: int = Field(default=30, ge=1)
    rate_limit_window_seconds: int = Field(default=300, ge=1)
    # Trust X-Forwarded-For from these proxy addresses only (for the client address).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cookie_secure: bool = False
    # Live documents (see docs/protocol.md for what each bound refuses).
    collab_max_update_bytes: int = Field(default=256 * 1024, ge=1024)
    collab_max_awareness_bytes: int = Field(default=64 * 1024, ge=256)
    # Updates one connection may have held for missing dependencies (per document).
    collab_max_pending: int = Field(default=100, ge=1)
    # Documents one connection may have open, and seats one user may hold in a process,
    # across every transport (a y-websocket or y-socket.io connection is one seat).
    collab_max_documents: int = Field(default=64, ge=1)
    collab_max_seats_per_user: int = Field(default=128, ge=1)
    # Every update is answered within this long: acknowledged, or a code that tells the
    # client to keep it and send it again (`store_unavailable`, `missing_dependencies`).
    collab_ack_deadline_seconds: float = Field(default=10.0, gt=0)
    collab_max_messages_per_second: int = Field(default=400, ge=1)
    collab_idle_unload_seconds: float = Field(default=30.0, gt=0)
    # Group commit of the update log: a commit costs about as much as several rows, so
    # batching saves CPU under load; an update's ack waits for its commit (up to this long).
    collab_commit_window_ms: float = Field(default=8.0, ge=0)
    # Multi-node: how often each node re-reads the log of documents with peers (a backstop
    # for relay messages Redis dropped).
    collab_catchup_seconds: float = Field(default=2.0, gt=0)
    # Content documents are written into SQL once edits pause this long, and at the latest
    # this long after the first unwritten edit (docs/protocol.md, "Content documents").
    content_store_debounce_seconds: float = Field(default=1.0, ge=0)
    content_store_max_wait_seconds: float = Field(default=10.0, ge=0)
    # Versions (docs/rest.md, "Versions"): an autosave once a live content document has been
    # quiet this long or took this many updates; retention keeps the newest `keep` autosaves
    # of each item and none older than `max_age_days` (0: no age limit), checked this often.
    version_autosave_quiet_seconds: float = Field(default=30.0, gt=0)
    version_autosave_every_changes: int = Field(default=1000, ge=1)
    version_autosave_keep: int = Field(default=50, ge=0)
    version_autosave_max_age_days: float = Field(default=30.0, ge=0)
    version_retention_interval_seconds: float = Field(default=3600.0, ge=1)
    # Outgoing mail: SMTP (aiosmtplib) when a host is set, else messages go to the log.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "realtime_cms@localhost"
    smtp_starttls: bool = True
    # Notifications (docs/notifications.md): how long a user's preferences stay cached, and
    # how often the periodic `notifications.digests` job looks for due hourly/daily windows.
    notification_preference_cache_seconds: float = Field(default=300.0, ge=0)
    notification_digest_interval_seconds: float = Field(default=60.0, ge=1)
    # Background work (docs/operations.md, "Background work"). `serve` runs an embedded
    # worker unless `worker_embedded` is false (dedicated `realtime-cms worker` processes).
    # A worker runs up to `job_concurrency` jobs at once from `job_queues` (empty: every
    # queue); its heartbeat is the lease of its jobs, and a process silent for
    # `job_stale_after_seconds` (0: 2.5 heartbeats) is dead and its jobs are taken back.
    # Idle workers wake on a commit (Redis pub/sub, or in-process) and poll every
    # `job_poll_seconds` besides; a stopping worker lets jobs finish for `job_grace_seconds`.
    # Ended jobs and batches, gone processes, worker metrics and logs are kept
    # `job_retention_days`. `job_plugins`: modules with a
    # `register(registry)` adding job types (comma-separated).
    worker_embedded: bool = True
    job_concurrency: int = Field(default=10, ge=1, le=1000)
    job_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    job_heartbeat_seconds: float = Field(default=2.0, gt=0)
    job_stale_after_seconds: float = Field(default=0.0, ge=0)
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_grace_seconds: float = Field(default=10.0, ge=0)
    job_retention_days: float = Field(default=7.0, gt=0)
    # Bearer token a Prometheus scrape of /metrics presents; unset: loopback clients only.
    metrics_token: str | None = None
    # A worker process above this resident memory (MB) loses health score.
    job_memory_limit_mb: int = Field(default=1024, ge=16)
    job_plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    db_echo: bool = False
    db_pool_size: int = Field(default=10, ge=1)
    # OWASP argon2id parameters (m=19 MiB, t=2, p=1); raised by operators, lowered only in tests.
    argon2_memory_kib: int = Field(default=19_456, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)

    @field_validator(
        "allowed_origins", "trusted_proxies", "job_queues", "job_plugins", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _no_wildcard_origins(cls, value: list[str]) -> list[str]:
        if not value or any(origin.strip() in ("*", "") for origin in value):
            raise ValueError("allowed_origins must list explicit origins (never '*' or empty)")
        return [origin.rstrip("/") for origin in value]

    @model_validator(mode="after")
    def _secret_required_outside_embedded_mode(self) -> Settings:
        if self.secret_key == DEFAULT_SECRET and not self.is_embedded:
            raise ConfigurationError(
                "RCMS_SECRET_KEY must be set when not running the embedded default "
                "(SQLite without Redis); generate one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if len(self.secret_key) < 32:
            raise ConfigurationError("RCMS_SECRET_KEY must be at least 32 characters")
        return self

    @property
    def is_embedded(self) -> bool:
        """True in the single-machine default: SQLite and in-process pub/sub."""
        return self.is_sqlite and self.redis_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a file-backed SQLite URL, else None."""
        if not self.is_sqlite:
            return None
        _, _, rest = self.database_url.partition(":///")
        return Path(rest) if rest and not rest.startswith(":memory:") else None

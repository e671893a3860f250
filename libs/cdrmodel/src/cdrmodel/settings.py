"""Settings shared by every service: read from CDR_* environment variables, validated at start."""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What one process of a service runs (`cdrflow serve SERVICE --role`): `api` the HTTP routes
# without the consumer and worker loops, `worker` those loops with only the ops routes
# (/healthz, /readyz, /metrics), `all` both. Separate Deployments scale each on its own.
Role = Literal["api", "worker", "all"]
ROLES: tuple[Role, ...] = ("api", "worker", "all")


class CommonSettings(BaseSettings):
    """What every cdrflow process needs; each service subclasses it with its own port."""

    model_config = SettingsConfigDict(env_prefix="CDR_", extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:54329/cdrflow",
        description="SQLAlchemy URL of PostgreSQL (asyncpg driver).",
    )
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers.")
    topic_namespace: str = Field(
        "", description="Prefix added to every topic name (lets several stacks share a broker)."
    )
    kafka_partitions: int = Field(6, ge=1, description="Partitions of topics created by cdrflow.")
    kafka_replication: int = Field(
        1, ge=1, description="Replication factor of topics created by cdrflow (3 in production)."
    )
    # No default: a deployment that forgets it must not run with a token everyone knows.
    admin_token: str = Field(min_length=8, description="Bearer token of admin APIs.")
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    log_level: str = Field("info", description="Lowest level logged: debug, info, warning, error.")
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one object a line for collectors; console: for people."
    )
    db_pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections kept per process (as many again on bursts)."
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="On SIGTERM: how long open HTTP requests may take to be answered, then how "
        "long the loops may take to finish their batch or push and hand back the rest; the "
        "pod's terminationGracePeriodSeconds must exceed twice this.",
    )
    role: Role = Field(
        "all",
        description="What this process runs: api (HTTP routes, no consumer or worker loops), "
        "worker (the loops, with /healthz, /readyz and /metrics only) or all.",
    )

    # Traces (cdrmodel.tracing): nothing is installed while the endpoint is unset.
    otel_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP base URL of a trace collector (`http://otel-collector:4318`; "
        "spans go to its /v1/traces). Unset: no tracing at all.",
    )
    otel_service_name: str | None = Field(
        None, description="`service.name` of this process's spans; unset: `cdrflow-<service>`."
    )
    otel_sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces kept; a request whose traceparent says sampled is "
        "always traced.",
    )

    @property
    def runs_api(self) -> bool:
        return self.role != "worker"

    @property
    def runs_workers(self) -> bool:
        return self.role != "api"

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql", "postgres://")):
            raise ValueError("must be a postgresql:// (or postgresql+asyncpg://) URL")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # set but empty, as a manifest's blank value: unset
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (the collector's OTLP/HTTP port)")
        return value


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings or exit with a message naming each bad variable (fail fast, no traceback)."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = []
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"]).upper()
            # Aliased fields (CDR_INGEST_PORT) already carry the prefix.
            name = field if field.startswith(prefix.upper()) else prefix.upper() + field
            lines.append(f"invalid setting {name}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None

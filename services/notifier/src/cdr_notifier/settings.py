"""Notifier settings (CDR_* variables)."""

from __future__ import annotations

from pydantic import Field, field_validator

from cdr_notifier.secretbox import parse_keys
from cdrmodel.settings import CommonSettings


class NotifierSettings(CommonSettings):
    port: int = Field(8083, alias="CDR_NOTIFIER_PORT", ge=1, le=65535, description="HTTP port.")
    notifier_group: str = Field("cdr-notifier", description="Kafka consumer group.")
    allow_private_webhooks: bool = Field(
        False, description="Allow push URLs on loopback, private or link-local addresses."
    )
    push_concurrency: int = Field(
        256, ge=1, le=4096, description="Pushes in flight at once, to all endpoints together."
    )
    push_endpoint_concurrency: int = Field(
        16,
        ge=1,
        le=1024,
        description="Pushes in flight at once to one endpoint (scheme, host, port).",
    )
    push_subscription_cap: int = Field(
        200, ge=1, le=5000, description="Due deliveries one subscription may hold claimed at once."
    )
    push_timeout: float = Field(10.0, gt=0, description="Seconds before a push attempt fails.")
    push_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to open the connection of a push attempt."
    )
    push_claim_batch: int = Field(
        200, ge=1, le=5000, description="Due deliveries claimed at most per claim."
    )
    breaker_failures: int = Field(
        5, ge=1, description="Failed pushes in a row that open an endpoint's circuit breaker."
    )
    breaker_open_seconds: float = Field(
        30.0, gt=0, description="First pause of an open breaker before it probes (doubles)."
    )
    breaker_max_open_seconds: float = Field(
        600.0, gt=0, description="Longest pause of an open breaker."
    )
    retry_base_seconds: float = Field(
        2.0, gt=0, description="Bound of the first retry's delay (full jitter under it)."
    )
    retry_multiplier: float = Field(
        4.0, ge=1, description="Each retry's bound is the previous one's times this."
    )
    retry_max_seconds: float = Field(21600.0, gt=0, description="Largest bound of a delay.")
    delivery_retention_days: int = Field(
        30, ge=1, description="Days delivered and dead deliveries (and attempts) are kept."
    )
    delivery_prune_batch: int = Field(
        1000, ge=1, le=100_000, description="Ended deliveries deleted per pruning statement."
    )
    delivery_prune_pause: float = Field(
        0.1, ge=0, description="Seconds between two pruning batches."
    )
    delivery_prune_interval: float = Field(
        600.0, gt=0, description="Seconds between two pruning passes."
    )
    webhook_keys: str = Field(
        "",
        description="Fernet keys that encrypt webhook secrets at rest, comma-separated, newest"
        " first (without any, a key derived from the admin token).",
    )

    @field_validator("webhook_keys")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        parse_keys(value)
        return value

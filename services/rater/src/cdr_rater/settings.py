"""Rater settings (CDR_* variables)."""

from __future__ import annotations

from pydantic import Field

from cdrmodel.settings import CommonSettings


class RaterSettings(CommonSettings):
    port: int = Field(8082, alias="CDR_RATER_PORT", ge=1, le=65535, description="HTTP port.")
    rater_group: str = Field("cdr-rater", description="Kafka consumer group of the raters.")
    rater_batch: int = Field(1000, ge=1, le=10000, description="Records per consumed batch.")
    rerate_batch: int = Field(
        500, ge=1, le=10000, description="Records re-priced per transaction when re-rating."
    )
    rerate_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often configuration changes are looked for."
    )
    rerate_republish_seconds: float = Field(
        30.0, gt=0, description="Age after which a re-rate whose ack was lost is published again."
    )

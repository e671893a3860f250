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
    partitions_ahead: int = Field(
        3,
        ge=1,
        le=24,
        description="Months after the current one whose `cdr` partitions are made ahead.",
    )
    partition_interval_seconds: float = Field(
        86400.0, gt=0, description="Seconds between two rounds of making `cdr` partitions."
    )
    partition_retry_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds before a round that could not take its locks (or reach the "
        "database) is tried again.",
    )
    partition_lock_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How long making a partition may wait for its locks (while it waits, the "
        "reads of cdr_default queue behind it).",
    )

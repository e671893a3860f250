"""Ingest settings (CDR_* variables)."""

from __future__ import annotations

from pydantic import Field

from cdrmodel.settings import CommonSettings


class IngestSettings(CommonSettings):
    port: int = Field(8081, alias="CDR_INGEST_PORT", ge=1, le=65535, description="HTTP port.")
    produce_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the broker's ack before answering 50503."
    )
    dedupe_days: int = Field(
        90, ge=1, le=3650, description="Days a submitted key is recognised as a duplicate (50421)."
    )
    dedupe_prune_batch: int = Field(
        1000, ge=1, le=100000, description="Expired keys deleted per pruning statement."
    )
    dedupe_prune_pause: float = Field(0.1, ge=0, description="Seconds between two pruning batches.")
    dedupe_prune_interval: float = Field(
        600.0, gt=0, description="Seconds between two pruning passes."
    )
    group_commit_size: int = Field(
        256, ge=1, le=10000, description="Most compat submissions of one account decided at once."
    )
    group_commit_flushes: int = Field(
        1,
        ge=1,
        le=64,
        description="Decisions of one account's compat submissions running at once; more "
        "arrivals wait for the next and are decided together.",
    )

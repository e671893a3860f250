"""Rater settings (CDR_* variables)."""

from __future__ import annotations

from pydantic import Field

from cdrmodel.settings import CommonSettings


class RaterSettings(CommonSettings):
    port: int = Field(8082, alias="CDR_RATER_PORT", ge=1, le=65535)
    rater_group: str = Field("cdr-rater", description="Kafka consumer group of the raters.")
    rater_batch: int = Field(1000, ge=1, le=10000, description="Records per consumed batch.")

"""Ingest settings (CDR_* variables)."""

from __future__ import annotations

from pydantic import Field

from cdrmodel.settings import CommonSettings


class IngestSettings(CommonSettings):
    port: int = Field(8081, alias="CDR_INGEST_PORT", ge=1, le=65535)
    produce_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the broker's ack before answering 50503."
    )

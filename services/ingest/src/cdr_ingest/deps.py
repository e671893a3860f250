"""The typed state the ingest lifespan builds (routes read it from app.state)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_ingest.publisher import Publisher
from cdrmodel.principals import PrincipalDirectory


@dataclass
class IngestState:
    engine: AsyncEngine
    directory: PrincipalDirectory
    publisher: Publisher

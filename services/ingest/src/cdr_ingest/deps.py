"""The typed state the ingest lifespan builds (routes read it from request.state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_ingest.publisher import Publisher
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.web import OpsState


@dataclass
class IngestState:
    engine: AsyncEngine
    directory: PrincipalDirectory
    publisher: Publisher


class IngestLifespanState(TypedDict):
    """What the lifespan yields; Starlette hands a copy to each request as request.state."""

    ops: OpsState
    ingest: IngestState

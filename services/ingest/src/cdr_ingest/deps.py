"""Request-scoped dependencies of ingest and the typed state the lifespan builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_ingest.publisher import Publisher
from cdrmodel.principals import PrincipalDirectory


@dataclass
class IngestState:
    engine: AsyncEngine
    directory: PrincipalDirectory
    publisher: Publisher


async def get_state(request: Request) -> IngestState:
    return request.app.state.ingest  # type: ignore[no-any-return]


StateDep = Annotated[IngestState, Depends(get_state)]

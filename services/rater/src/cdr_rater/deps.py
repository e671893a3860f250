"""Request-scoped dependencies of the rater and the typed state its lifespan builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class RaterState:
    engine: AsyncEngine


async def get_state(request: Request) -> RaterState:
    return request.app.state.rater  # type: ignore[no-any-return]


StateDep = Annotated[RaterState, Depends(get_state)]

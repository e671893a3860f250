"""Request-scoped dependencies of the rater and the typed state its lifespan builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.rerate import Rerater
from cdrmodel.web import OpsState


@dataclass
class RaterState:
    engine: AsyncEngine
    rerater: Rerater


class RaterLifespanState(TypedDict):
    """What the lifespan yields; Starlette hands a copy to each request as request.state."""

    ops: OpsState
    rater: RaterState


async def get_state(request: Request) -> RaterState:
    state: RaterState = request.state.rater
    return state


StateDep = Annotated[RaterState, Depends(get_state)]

"""Request-scoped dependencies of the rater and the typed state its lifespan builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypedDict

from aiokafka import AIOKafkaConsumer
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_rater.plans import PlanCache
from cdr_rater.rerate import Rerater
from cdrmodel.kafka import KafkaClient
from cdrmodel.principals import Principal, PrincipalDirectory, basic_credentials, split_login
from cdrmodel.web import OpsState


@dataclass
class RaterState:
    engine: AsyncEngine
    # API accounts, for the routes they call (quote, explain); the admin API uses the token.
    directory: PrincipalDirectory
    rerater: Rerater
    # The process's cached tenant plans: quotes price with what live rating uses.
    plans: PlanCache
    # The consumer of cdr.submitted.v1 (its assignment: the partitions this replica rates).
    consumer: KafkaClient[AIOKafkaConsumer]


class RaterLifespanState(TypedDict):
    """What the lifespan yields; Starlette hands a copy to each request as request.state."""

    ops: OpsState
    rater: RaterState


async def get_state(request: Request) -> RaterState:
    state: RaterState = request.state.rater
    return state


StateDep = Annotated[RaterState, Depends(get_state)]


async def get_principal(request: Request, state: StateDep) -> Principal:
    """An API account from HTTP Basic (`DatabaseID/APIAccountID`, APIPassword), as ingest's
    `/v1/cdrs` takes it; a failure is 401 with the contract's code."""
    login, password = basic_credentials(request.headers.get("authorization", "")) or ("", "")
    database_id, account_id = split_login(login)
    client = request.client.host if request.client else None
    return await state.directory.authenticate(database_id, account_id, password, client=client)


PrincipalDep = Annotated[Principal, Depends(get_principal)]

"""Request-scoped dependencies of the notifier and the typed state its lifespan builds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier.secretbox import SecretBox
from cdrmodel.principals import (
    AddressRefused,
    Principal,
    PrincipalDirectory,
    basic_credentials,
    split_login,
)
from cdrmodel.web import OpsState


@dataclass
class NotifierState:
    engine: AsyncEngine
    directory: PrincipalDirectory
    wake: asyncio.Event  # set when new deliveries are due: the dispatcher stops idling
    allow_private_webhooks: bool
    secrets: SecretBox  # seals and opens the subscriptions' signing secrets


class NotifierLifespanState(TypedDict):
    """What the lifespan yields; Starlette hands a copy to each request as request.state."""

    ops: OpsState
    notifier: NotifierState


async def get_state(request: Request) -> NotifierState:
    state: NotifierState = request.state.notifier
    return state


StateDep = Annotated[NotifierState, Depends(get_state)]


async def get_principal(request: Request, state: StateDep) -> Principal:
    """An API account from HTTP Basic (`DB/ACCOUNT`) or `login=` / `password=` parameters,
    reading from an address its allowlist takes in (`reader`)."""
    return await reader(
        request, state, request.query_params.get("login"), request.query_params.get("password")
    )


async def reader(
    request: Request, state: NotifierState, login: str | None, password: str | None
) -> Principal:
    """The API account signing in with HTTP Basic (`DB/ACCOUNT`), else `login` and
    `password` as the route found them, reading from an address its allowlist
    (`allowed_networks`) takes in.

    The address is the socket peer (`request.client`), which uvicorn replaces with the
    X-Forwarded-For client only for proxies in `--forwarded-allow-ips`; never a header read
    here. The check comes after authentication, so a caller outside learns nothing without
    the password, and a refused one gets no data, whatever it asked for (403)."""
    basic = basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        login, password = basic
    database_id, account_id = split_login(login or "")
    client = request.client.host if request.client else None
    principal = await state.directory.authenticate(database_id, account_id, password, client=client)
    if not principal.reads_allowed_from(client):
        raise AddressRefused(
            f"API account {principal.name} may not read from {client or 'an unknown address'}:"
            " the address is outside its allowed_networks"
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]

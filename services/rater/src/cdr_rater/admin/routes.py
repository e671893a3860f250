"""Admin endpoints of contract §3 (bearer admin token). Deck uploads replace atomically."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from cdr_rater.admin import repository
from cdr_rater.admin.decks import parse_deck
from cdr_rater.admin.schemas import (
    ApiAccountRead,
    ApiAccountUpsert,
    DeckReplaced,
    ExtensionRead,
    ExtensionUpsert,
    PackageRead,
    PackageUpsert,
    RateLines,
    RouteRead,
    RouteUpsert,
    TenantRead,
    TenantUpsert,
)
from cdr_rater.deps import StateDep
from cdrmodel.auth import hash_password
from cdrmodel.errors import error_responses
from cdrmodel.money import fmt8
from cdrmodel.validation import Identifier, Name
from cdrmodel.web import AdminDep

router = APIRouter(
    prefix="/v1/admin/tenants",
    tags=["admin"],
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 404, 422, 503),
)

_DECK_BODY = {
    "requestBody": {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
        "required": True,
    }
}


@router.put("/{database_id}", response_model=TenantRead, summary="Create or update a tenant")
async def put_tenant(database_id: Identifier, body: TenantUpsert, state: StateDep) -> TenantRead:
    async with state.engine.begin() as conn:
        await repository.upsert_tenant(conn, database_id=database_id, values=body.model_dump())
    return TenantRead(database_id=database_id, **body.model_dump())


@router.put(
    "/{database_id}/api-accounts/{api_account_id}",
    response_model=ApiAccountRead,
    summary="Create or update an API account (the password is stored as an argon2 hash)",
)
async def put_api_account(
    database_id: Identifier, api_account_id: Identifier, body: ApiAccountUpsert, state: StateDep
) -> ApiAccountRead:
    values = {
        # argon2 is deliberately slow: off the event loop, which also runs the consumer
        "password_hash": await asyncio.to_thread(hash_password, body.password),
        "daily_limit": body.daily_limit,
        "default_package": body.default_package,
    }
    async with state.engine.begin() as conn:
        await repository.upsert_api_account(
            conn, database_id=database_id, api_account_id=api_account_id, values=values
        )
    return ApiAccountRead(
        database_id=database_id,
        api_account_id=api_account_id,
        login=f"{database_id}/{api_account_id}",
        daily_limit=body.daily_limit,
        default_package=body.default_package,
    )


@router.put("/{database_id}/packages/{package_id}", response_model=PackageRead)
async def put_package(
    database_id: Identifier, package_id: Identifier, body: PackageUpsert, state: StateDep
) -> PackageRead:
    async with state.engine.begin() as conn:
        await repository.upsert_package(
            conn,
            database_id=database_id,
            package_id=package_id,
            name=body.name,
            route_id=body.route,
        )
    return PackageRead(database_id=database_id, package_id=package_id, **body.model_dump())


@router.put("/{database_id}/routes/{route_id}", response_model=RouteRead)
async def put_route(
    database_id: Identifier, route_id: Identifier, body: RouteUpsert, state: StateDep
) -> RouteRead:
    async with state.engine.begin() as conn:
        await repository.upsert_route(
            conn, database_id=database_id, route_id=route_id, name=body.name
        )
    return RouteRead(database_id=database_id, route_id=route_id, **body.model_dump())


@router.put("/{database_id}/extensions/{extension_id}", response_model=ExtensionRead)
async def put_extension(
    database_id: Identifier, extension_id: Identifier, body: ExtensionUpsert, state: StateDep
) -> ExtensionRead:
    values = {"package_id": body.package, "account": body.account, "client": body.client}
    async with state.engine.begin() as conn:
        await repository.upsert_extension(
            conn, database_id=database_id, number=extension_id, values=values
        )
    return ExtensionRead(database_id=database_id, extension=extension_id, **body.model_dump())


async def _replace_deck(
    request: Request, state: StateDep, *, database_id: str, kind: str, deck_id: str
) -> DeckReplaced:
    lines = parse_deck(await request.body(), request.headers.get("content-type", ""))
    async with state.engine.begin() as conn:  # one transaction: the old deck or the new one
        await repository.replace_deck(
            conn, database_id=database_id, kind=kind, deck_id=deck_id, lines=lines
        )
    return DeckReplaced(deck=f"{kind}/{deck_id}", lines=len(lines))


async def _list_deck(
    state: StateDep, *, database_id: str, kind: str, deck_id: str, query: str | None
) -> list[dict[str, Any]]:
    async with state.engine.connect() as conn:
        rows = await repository.list_deck(
            conn, database_id=database_id, kind=kind, deck_id=deck_id, query=query
        )
    for row in rows:  # money on the wire: fixed-point, 8 places
        row["rate"], row["connect_fee"] = fmt8(row["rate"]), fmt8(row["connect_fee"])
    return rows


@router.put(
    "/{database_id}/packages/{package_id}/rates",
    response_model=DeckReplaced,
    openapi_extra=_DECK_BODY,
    summary="Replace a package's sell deck (CSV with a header, or a JSON list)",
)
async def put_package_rates(
    database_id: Identifier, package_id: Identifier, request: Request, state: StateDep
) -> DeckReplaced:
    return await _replace_deck(
        request, state, database_id=database_id, kind=repository.PACKAGE, deck_id=package_id
    )


@router.get(
    "/{database_id}/packages/{package_id}/rates",
    response_model=RateLines,
    summary="Sell deck lines",
)
async def get_package_rates(
    database_id: Identifier, package_id: Identifier, state: StateDep, query: Name | None = None
) -> dict[str, Any]:
    lines = await _list_deck(
        state, database_id=database_id, kind=repository.PACKAGE, deck_id=package_id, query=query
    )
    return {"rates": lines}


@router.put(
    "/{database_id}/routes/{route_id}/rates",
    response_model=DeckReplaced,
    openapi_extra=_DECK_BODY,
    summary="Replace a route's termination (cost) deck",
)
async def put_route_rates(
    database_id: Identifier, route_id: Identifier, request: Request, state: StateDep
) -> DeckReplaced:
    return await _replace_deck(
        request, state, database_id=database_id, kind=repository.ROUTE, deck_id=route_id
    )


@router.get(
    "/{database_id}/routes/{route_id}/rates",
    response_model=RateLines,
    summary="Termination deck lines",
)
async def get_route_rates(
    database_id: Identifier, route_id: Identifier, state: StateDep, query: Name | None = None
) -> dict[str, Any]:
    lines = await _list_deck(
        state, database_id=database_id, kind=repository.ROUTE, deck_id=route_id, query=query
    )
    return {"rates": lines}

"""Admin endpoints of contract §3 (bearer admin token): every resource written by PUT and read
back by GET, deck uploads bounded, parsed off the event loop and replaced atomically."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_rater.admin import parse_pool, repository
from cdr_rater.admin.decks import BadDeck, prepare_deck
from cdr_rater.admin.schemas import (
    ApiAccountList,
    ApiAccountRead,
    ApiAccountUpsert,
    DeckReplaced,
    ExtensionList,
    ExtensionRead,
    ExtensionUpsert,
    PackageList,
    PackageRead,
    PackageUpsert,
    RateLines,
    RouteList,
    RouteRead,
    RouteUpsert,
    TenantList,
    TenantRead,
    TenantUpsert,
)
from cdr_rater.deps import StateDep
from cdrmodel.auth import hash_password
from cdrmodel.errors import CdrError, Unprocessable, error_responses
from cdrmodel.money import fmt8
from cdrmodel.validation import INT4_MAX, Identifier, Name
from cdrmodel.web import AdminDep

router = APIRouter(
    prefix="/v1/admin/tenants",
    tags=["admin"],
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 404, 422, 503),
)

MAX_DECK_BYTES = 50 * 2**20  # 50 MiB: about a million lines; a larger body is refused unread

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Offset = Annotated[int, Query(ge=0, le=INT4_MAX, description="Items to skip")]

_DECK_BODY = {
    "requestBody": {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
        "required": True,
    }
}


class BodyTooLarge(CdrError):
    status_code = 413


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    too_large = BodyTooLarge(f"body larger than {limit} bytes; split the deck or compress rates")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _read(kind: str, row: dict[str, Any], database_id: str) -> dict[str, Any]:
    """A stored row as its Read model's fields (ids named as in the PUT bodies)."""
    out = {**row, "database_id": database_id}
    if kind == "package":
        out["route"] = out.pop("route_id")
    elif kind == "extension":
        out["package"] = out.pop("package_id")
    elif kind == "api_account":
        out["login"] = f"{database_id}/{row['api_account_id']}"
    return out


async def _item(conn: AsyncConnection, kind: str, database_id: str, item_id: str) -> Any:
    row = await repository.get_item(conn, kind=kind, database_id=database_id, item_id=item_id)
    return _read(kind, row, database_id)


def _add_list(kind: str, path: str, answer: type[BaseModel], item: type[BaseModel]) -> None:
    """`GET /{database_id}/<path>`: a page of the tenant's items of `kind`, answered as
    `answer`, whose one field (named like `path`) holds them as `item`s."""
    field = path.replace("-", "_")

    async def endpoint(
        database_id: Identifier, state: StateDep, limit: Limit = 100, offset: Offset = 0
    ) -> Any:
        async with state.engine.connect() as conn:
            rows = await repository.list_items(
                conn, kind=kind, database_id=database_id, limit=limit, offset=offset
            )
        return answer(**{field: [item(**_read(kind, row, database_id)) for row in rows]})

    router.add_api_route(
        f"/{{database_id}}/{path}",
        endpoint,
        methods=["GET"],
        response_model=answer,
        name=f"list_{field}",
        summary=f"A page of the tenant's {path}, ordered by id",
    )


@router.get("", response_model=TenantList, summary="List tenants")
async def list_tenants(state: StateDep, limit: Limit = 100, offset: Offset = 0) -> TenantList:
    async with state.engine.connect() as conn:
        rows = await repository.list_tenants(conn, limit=limit, offset=offset)
    return TenantList(tenants=[TenantRead(**row) for row in rows])


@router.get("/{database_id}", response_model=TenantRead, summary="A tenant")
async def get_tenant(database_id: Identifier, state: StateDep) -> TenantRead:
    async with state.engine.connect() as conn:
        return TenantRead(**await repository.get_tenant(conn, database_id=database_id))


@router.put("/{database_id}", response_model=TenantRead, summary="Create or update a tenant")
async def put_tenant(database_id: Identifier, body: TenantUpsert, state: StateDep) -> TenantRead:
    async with state.engine.begin() as conn:
        await repository.upsert_tenant(conn, database_id=database_id, values=body.model_dump())
        return TenantRead(**await repository.get_tenant(conn, database_id=database_id))


@router.put(
    "/{database_id}/api-accounts/{api_account_id}",
    response_model=ApiAccountRead,
    summary="Create or update an API account (the password is stored as an argon2 hash)",
)
async def put_api_account(
    database_id: Identifier, api_account_id: Identifier, body: ApiAccountUpsert, state: StateDep
) -> ApiAccountRead:
    values: dict[str, Any] = {
        "daily_limit": body.daily_limit,
        "default_package": body.default_package,
        # Replaced like every field of the PUT: omitted is null, reads from anywhere.
        "allowed_networks": body.allowed_networks,
    }
    if body.password is not None:
        # argon2 is deliberately slow: off the event loop, which also runs the consumer. A new
        # hash is a new cache key for every replica's verifier, and their principal caches
        # reread the row within 1.5 s: a rotation is in force everywhere within 2 s.
        values["password_hash"] = await asyncio.to_thread(hash_password, body.password)
    async with state.engine.begin() as conn:
        await repository.upsert_api_account(
            conn, database_id=database_id, api_account_id=api_account_id, values=values
        )
        return ApiAccountRead(**await _item(conn, "api_account", database_id, api_account_id))


@router.get(
    "/{database_id}/api-accounts/{api_account_id}",
    response_model=ApiAccountRead,
    summary="An API account (never its password)",
)
async def get_api_account(
    database_id: Identifier, api_account_id: Identifier, state: StateDep
) -> ApiAccountRead:
    async with state.engine.connect() as conn:
        return ApiAccountRead(**await _item(conn, "api_account", database_id, api_account_id))


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
        return PackageRead(**await _item(conn, "package", database_id, package_id))


@router.get("/{database_id}/packages/{package_id}", response_model=PackageRead)
async def get_package(
    database_id: Identifier, package_id: Identifier, state: StateDep
) -> PackageRead:
    async with state.engine.connect() as conn:
        return PackageRead(**await _item(conn, "package", database_id, package_id))


@router.put("/{database_id}/routes/{route_id}", response_model=RouteRead)
async def put_route(
    database_id: Identifier, route_id: Identifier, body: RouteUpsert, state: StateDep
) -> RouteRead:
    async with state.engine.begin() as conn:
        await repository.upsert_route(
            conn, database_id=database_id, route_id=route_id, name=body.name
        )
        return RouteRead(**await _item(conn, "route", database_id, route_id))


@router.get("/{database_id}/routes/{route_id}", response_model=RouteRead)
async def get_route(database_id: Identifier, route_id: Identifier, state: StateDep) -> RouteRead:
    async with state.engine.connect() as conn:
        return RouteRead(**await _item(conn, "route", database_id, route_id))


@router.put("/{database_id}/extensions/{extension_id}", response_model=ExtensionRead)
async def put_extension(
    database_id: Identifier, extension_id: Identifier, body: ExtensionUpsert, state: StateDep
) -> ExtensionRead:
    values = {"package_id": body.package, "account": body.account, "client": body.client}
    async with state.engine.begin() as conn:
        await repository.upsert_extension(
            conn, database_id=database_id, number=extension_id, values=values
        )
        return ExtensionRead(**await _item(conn, "extension", database_id, extension_id))


@router.get("/{database_id}/extensions/{extension_id}", response_model=ExtensionRead)
async def get_extension(
    database_id: Identifier, extension_id: Identifier, state: StateDep
) -> ExtensionRead:
    async with state.engine.connect() as conn:
        return ExtensionRead(**await _item(conn, "extension", database_id, extension_id))


async def _replace_deck(
    request: Request, state: StateDep, *, database_id: str, kind: str, deck_id: str
) -> DeckReplaced:
    async with state.engine.connect() as conn:  # 404 before reading a large body
        zone = await repository.deck_zone(conn, database_id=database_id, kind=kind, deck_id=deck_id)
    body = await _bounded_body(request, MAX_DECK_BYTES)
    try:
        count, copy = await parse_pool.run(
            prepare_deck,
            body,
            request.headers.get("content-type", ""),
            zone,
            (database_id, kind, deck_id),
        )
    except BadDeck as exc:
        raise Unprocessable(exc.message, detail=exc.detail) from None
    del body
    async with state.engine.begin() as conn:  # one transaction: the old deck or the new one
        await repository.replace_deck(
            conn, database_id=database_id, kind=kind, deck_id=deck_id, copy=copy
        )
    return DeckReplaced(deck=f"{kind}/{deck_id}", lines=count)


RateLimit = Annotated[int, Query(ge=1, le=10000, description="Lines per page")]


async def _list_deck(state: StateDep, *, limit: int, offset: int, **deck: Any) -> dict[str, Any]:
    """`deck`: database_id, kind, deck_id and query, as `repository.list_deck` takes them."""
    async with state.engine.connect() as conn:
        # one line more than the page: whether there is a next one
        rows = await repository.list_deck(conn, limit=limit + 1, offset=offset, **deck)
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:  # money on the wire: fixed-point, 8 places
        row["rate"], row["connect_fee"] = fmt8(row["rate"]), fmt8(row["connect_fee"])
    return {"rates": rows, "next_offset": offset + limit if more else None}


@router.put(
    "/{database_id}/packages/{package_id}/rates",
    response_model=DeckReplaced,
    openapi_extra=_DECK_BODY,
    responses=error_responses(413),
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
    database_id: Identifier,
    package_id: Identifier,
    state: StateDep,
    query: Name | None = None,
    limit: RateLimit = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    return await _list_deck(
        state,
        database_id=database_id,
        kind=repository.PACKAGE,
        deck_id=package_id,
        query=query,
        limit=limit,
        offset=offset,
    )


@router.put(
    "/{database_id}/routes/{route_id}/rates",
    response_model=DeckReplaced,
    openapi_extra=_DECK_BODY,
    responses=error_responses(413),
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
    database_id: Identifier,
    route_id: Identifier,
    state: StateDep,
    query: Name | None = None,
    limit: RateLimit = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    return await _list_deck(
        state,
        database_id=database_id,
        kind=repository.ROUTE,
        deck_id=route_id,
        query=query,
        limit=limit,
        offset=offset,
    )


_add_list("api_account", "api-accounts", ApiAccountList, ApiAccountRead)
_add_list("package", "packages", PackageList, PackageRead)
_add_list("route", "routes", RouteList, RouteRead)
_add_list("extension", "extensions", ExtensionList, ExtensionRead)

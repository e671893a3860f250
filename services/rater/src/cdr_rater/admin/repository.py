"""SQL of the rater's admin API: tenants, accounts, packages, routes, extensions and decks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from cdrmodel.db import api_account, extension, package, rate_line, route, tenant
from cdrmodel.errors import NotFound
from cdrmodel.repository import require_tenant

PACKAGE, ROUTE = "package", "route"  # rate_line.deck_kind: a sell deck or a cost deck
DECK_LIST_LIMIT = 10000


async def _upsert(
    conn: AsyncConnection, table: Table, keys: dict[str, Any], values: dict[str, Any]
) -> None:
    stmt = pg_insert(table).values(**keys, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={**values, "updated_at": func.now()}
    )
    await conn.execute(stmt)


async def upsert_tenant(conn: AsyncConnection, *, database_id: str, values: dict[str, Any]) -> None:
    # The zone and home country change how calls are rated: a configuration change too.
    stmt = pg_insert(tenant).values(database_id=database_id, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[tenant.c.database_id],
        set_={**values, "updated_at": func.now(), "config_version": tenant.c.config_version + 1},
    )
    await conn.execute(stmt)


async def changed_tenant(conn: AsyncConnection, database_id: str) -> None:
    """Bumps the tenant's config_version in the caller's transaction (raters reload what they
    cache of it, re-rating looks again at its unrated records); NotFound without the tenant.
    The row lock it takes also orders concurrent configuration changes of one tenant."""
    found = await conn.scalar(
        update(tenant)
        .where(tenant.c.database_id == database_id)
        .values(config_version=tenant.c.config_version + 1)
        .returning(tenant.c.database_id)
    )
    if found is None:
        raise NotFound(f"tenant {database_id!r} not found")


async def upsert_api_account(
    conn: AsyncConnection, *, database_id: str, api_account_id: str, values: dict[str, Any]
) -> None:
    await changed_tenant(conn, database_id)
    keys = {"database_id": database_id, "api_account_id": api_account_id}
    await _upsert(conn, api_account, keys, values)


async def upsert_package(
    conn: AsyncConnection, *, database_id: str, package_id: str, name: str, route_id: str | None
) -> None:
    await changed_tenant(conn, database_id)
    keys = {"database_id": database_id, "package_id": package_id}
    await _upsert(conn, package, keys, {"name": name, "route_id": route_id})


async def upsert_route(
    conn: AsyncConnection, *, database_id: str, route_id: str, name: str
) -> None:
    await changed_tenant(conn, database_id)
    await _upsert(conn, route, {"database_id": database_id, "route_id": route_id}, {"name": name})


async def upsert_extension(
    conn: AsyncConnection, *, database_id: str, number: str, values: dict[str, Any]
) -> None:
    await changed_tenant(conn, database_id)
    await _upsert(conn, extension, {"database_id": database_id, "extension": number}, values)


def _deck_owner(kind: str) -> tuple[Table, ColumnElement[str]]:
    return (package, package.c.package_id) if kind == PACKAGE else (route, route.c.route_id)


async def replace_deck(
    conn: AsyncConnection,
    *,
    database_id: str,
    kind: str,
    deck_id: str,
    lines: Sequence[dict[str, Any]],
) -> None:
    """Delete the deck's lines and insert the new ones; the caller's transaction makes it
    atomic (a rater sees the old deck or the new one, never a mix)."""
    await changed_tenant(conn, database_id)
    owner, owner_key = _deck_owner(kind)
    exists = await conn.scalar(
        select(owner_key).where(owner.c.database_id == database_id, owner_key == deck_id)
    )
    if exists is None:
        raise NotFound(f"{kind} {deck_id!r} not found in tenant {database_id!r}")
    await conn.execute(
        delete(rate_line).where(
            rate_line.c.database_id == database_id,
            rate_line.c.deck_kind == kind,
            rate_line.c.deck_id == deck_id,
        )
    )
    if lines:
        base = {"database_id": database_id, "deck_kind": kind, "deck_id": deck_id}
        await conn.execute(rate_line.insert(), [{**base, **line} for line in lines])


async def list_deck(
    conn: AsyncConnection, *, database_id: str, kind: str, deck_id: str, query: str | None
) -> list[dict[str, Any]]:
    """Deck lines whose destination contains `query` (wildcards taken literally) or whose
    prefix starts with its digits; ordered by prefix."""
    await require_tenant(conn, database_id)
    stmt = select(
        rate_line.c.prefix,
        rate_line.c.destination,
        rate_line.c.rate,
        rate_line.c.increment,
        rate_line.c.initial_increment,
        rate_line.c.connect_fee,
        rate_line.c.effective_from,
        rate_line.c.effective_to,
        rate_line.c.direction,
    ).where(
        rate_line.c.database_id == database_id,
        rate_line.c.deck_kind == kind,
        rate_line.c.deck_id == deck_id,
    )
    if query:
        digits = "".join(ch for ch in query if ch.isdigit())
        conds: list[ColumnElement[bool]] = [
            rate_line.c.destination.icontains(query, autoescape=True)
        ]
        if digits:
            conds.append(rate_line.c.prefix.startswith(digits))
        stmt = stmt.where(or_(*conds))
    stmt = stmt.order_by(rate_line.c.prefix, rate_line.c.effective_from).limit(DECK_LIST_LIMIT)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]

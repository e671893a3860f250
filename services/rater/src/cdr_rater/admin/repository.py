"""SQL of the rater's admin API: tenants, accounts, packages, routes, extensions and decks."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from cdr_rater.admin.decks import COPY_COLUMNS
from cdrmodel.db import api_account, extension, package, rate_line, route, tenant
from cdrmodel.errors import NotFound, Unprocessable
from cdrmodel.repository import require_tenant

PACKAGE, ROUTE = "package", "route"  # rate_line.deck_kind: a sell deck or a cost deck


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


async def changed_tenant(conn: AsyncConnection, database_id: str) -> int:
    """Bumps the tenant's config_version in the caller's transaction (raters reload what they
    cache of it, re-rating looks again at its unrated records) and answers the new version;
    NotFound without the tenant. The row lock it takes also orders concurrent configuration
    changes of one tenant."""
    version = await conn.scalar(
        update(tenant)
        .where(tenant.c.database_id == database_id)
        .values(config_version=tenant.c.config_version + 1)
        .returning(tenant.c.config_version)
    )
    if version is None:
        raise NotFound(f"tenant {database_id!r} not found")
    return int(version)


async def upsert_api_account(
    conn: AsyncConnection, *, database_id: str, api_account_id: str, values: dict[str, Any]
) -> None:
    """Creates or replaces the account. Without `password_hash` the stored one is kept: a
    limit or package change need not resend the password, but a new account needs one."""
    await changed_tenant(conn, database_id)
    keys = {"database_id": database_id, "api_account_id": api_account_id}
    if "password_hash" in values:
        await _upsert(conn, api_account, keys, values)
        return
    found = await conn.scalar(
        update(api_account)
        .where(
            api_account.c.database_id == database_id,
            api_account.c.api_account_id == api_account_id,
        )
        .values(**values, updated_at=func.now())
        .returning(api_account.c.api_account_id)
    )
    if found is None:
        raise Unprocessable("password: required to create an API account")


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


async def deck_zone(conn: AsyncConnection, *, database_id: str, kind: str, deck_id: str) -> str:
    """The tenant's time zone (a deck's dates without an offset are read in it); NotFound
    when the tenant or the package / route is unknown, before a large body is parsed."""
    owner, owner_key = _deck_owner(kind)
    row = (
        await conn.execute(
            select(tenant.c.timezone, owner_key)
            .select_from(
                tenant.outerjoin(
                    owner, (owner.c.database_id == tenant.c.database_id) & (owner_key == deck_id)
                )
            )
            .where(tenant.c.database_id == database_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"tenant {database_id!r} not found")
    if row[1] is None:
        raise NotFound(f"{kind} {deck_id!r} not found in tenant {database_id!r}")
    return str(row[0])


async def replace_deck(
    conn: AsyncConnection,
    *,
    database_id: str,
    kind: str,
    deck_id: str,
    copy: bytes,
) -> None:
    """Delete the deck's lines and COPY the new ones in (`copy`: `decks.copy_csv`); the
    caller's transaction makes it atomic (a rater sees the old deck or the new one)."""
    version = await changed_tenant(conn, database_id)
    owner, owner_key = _deck_owner(kind)
    # The deck's version moves with the tenant's: raters reload this deck, and only this one.
    exists = await conn.scalar(
        update(owner)
        .where(owner.c.database_id == database_id, owner_key == deck_id)
        .values(deck_version=version)
        .returning(owner_key)
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
    if not copy:
        return
    # COPY: one round trip for 100,000 lines, and no per-line work in this process
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    await raw.copy_to_table(
        rate_line.name,
        source=io.BytesIO(copy),
        columns=list(COPY_COLUMNS),
        format="csv",
        force_not_null=["destination"],
    )


async def list_deck(
    conn: AsyncConnection,
    *,
    database_id: str,
    kind: str,
    deck_id: str,
    query: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """A page of deck lines whose destination contains `query` or, when `query` is a number
    (digits, optionally after a `+`), whose prefix starts with it; ordered by prefix."""
    await deck_zone(conn, database_id=database_id, kind=kind, deck_id=deck_id)
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
        rate_line.c.time_band,
    ).where(
        rate_line.c.database_id == database_id,
        rate_line.c.deck_kind == kind,
        rate_line.c.deck_id == deck_id,
    )
    if query:
        # autoescape: `%`, `_` (and the escape character) in the query are taken literally
        conds = [rate_line.c.destination.icontains(query, autoescape=True)]
        digits = query.strip().removeprefix("+")
        if digits.isdigit() and digits.isascii():
            conds.append(rate_line.c.prefix.startswith(digits, autoescape=True))
        stmt = stmt.where(or_(*conds))
    stmt = (
        stmt.order_by(rate_line.c.prefix, rate_line.c.effective_from, rate_line.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


# What the admin API reads back of each resource, keyed by the column naming it in its
# tenant; secrets (the password hash) are never among them.
_READ: dict[str, tuple[Table, str, tuple[str, ...]]] = {
    "api_account": (
        api_account,
        "api_account_id",
        ("api_account_id", "daily_limit", "default_package", "allowed_networks", "updated_at"),
    ),
    "package": (package, "package_id", ("package_id", "name", "route_id", "updated_at")),
    "route": (route, "route_id", ("route_id", "name", "updated_at")),
    "extension": (
        extension,
        "extension",
        ("extension", "package_id", "account", "client", "updated_at"),
    ),
}
_TENANT_COLUMNS = (
    "database_id",
    "name",
    "timezone",
    "country",
    "currency",
    "config_version",
    "updated_at",
)


async def get_tenant(conn: AsyncConnection, *, database_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            select(*(tenant.c[c] for c in _TENANT_COLUMNS)).where(
                tenant.c.database_id == database_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"tenant {database_id!r} not found")
    return dict(row._mapping)


async def list_tenants(conn: AsyncConnection, *, limit: int, offset: int) -> list[dict[str, Any]]:
    stmt = select(*(tenant.c[c] for c in _TENANT_COLUMNS)).order_by(tenant.c.database_id)
    rows = await conn.execute(stmt.limit(limit).offset(offset))
    return [dict(r) for r in rows.mappings()]


async def get_item(
    conn: AsyncConnection, *, kind: str, database_id: str, item_id: str
) -> dict[str, Any]:
    """One api_account / package / route / extension; NotFound naming what is missing."""
    table, key, columns = _READ[kind]
    row = (
        await conn.execute(
            select(*(table.c[c] for c in columns)).where(
                table.c.database_id == database_id, table.c[key] == item_id
            )
        )
    ).first()
    if row is None:
        await require_tenant(conn, database_id)
        raise NotFound(f"{kind.replace('_', ' ')} {item_id!r} not found in tenant {database_id!r}")
    return dict(row._mapping)


async def list_items(
    conn: AsyncConnection, *, kind: str, database_id: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """A page of the tenant's items of `kind`, ordered by their id."""
    await require_tenant(conn, database_id)
    table, key, columns = _READ[kind]
    stmt = (
        select(*(table.c[c] for c in columns))
        .where(table.c.database_id == database_id)
        .order_by(table.c[key])
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]

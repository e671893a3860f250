"""SQL of the rater: what rating a batch needs of a tenant, and storing rated CDRs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Text, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_rater import bands
from cdr_rater.handler import match_numbers
from cdr_rater.pricing import Extension, Package, RateDeck, RateLine, TenantPlan
from cdrmodel.db import api_account, cdr, extension, package, rate_line, tenant
from cdrmodel.events import CdrSubmitted

_TEXTS = ARRAY(Text)
_UUIDS = ARRAY(UUID(as_uuid=True))


def _any(values: Sequence[str]) -> Any:
    """`= ANY($1)` with one array parameter: no limit on how many values a batch brings
    (an IN list is one bind parameter per value, and PostgreSQL allows 32,767)."""
    return any_(bindparam(None, list(values), type_=_TEXTS))


async def load_tenant(conn: AsyncConnection, *, database_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(tenant).where(tenant.c.database_id == database_id))).first()
    return dict(row._mapping) if row is not None else None


async def load_extensions(
    conn: AsyncConnection, *, database_id: str, numbers: Iterable[str]
) -> dict[str, Extension]:
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    rows = await conn.execute(
        select(
            extension.c.extension, extension.c.package_id, extension.c.account, extension.c.client
        ).where(extension.c.database_id == database_id, extension.c.extension == _any(wanted))
    )
    return {r.extension: Extension(r.package_id, r.account, r.client) for r in rows}


async def load_default_packages(
    conn: AsyncConnection, *, database_id: str, accounts: Iterable[str]
) -> dict[str, str | None]:
    rows = await conn.execute(
        select(api_account.c.api_account_id, api_account.c.default_package).where(
            api_account.c.database_id == database_id,
            api_account.c.api_account_id == _any(sorted(set(accounts))),
        )
    )
    return {r.api_account_id: r.default_package for r in rows}


async def load_decks(
    conn: AsyncConnection, *, database_id: str, prefixes: Iterable[str]
) -> tuple[dict[str, Package], dict[str, RateDeck]]:
    """Packages and routes with only the deck lines whose prefix can match this batch."""
    wanted = sorted(set(prefixes))
    lines: dict[tuple[str, str], list[RateLine]] = {}
    if wanted:
        rows = await conn.execute(
            select(rate_line).where(
                rate_line.c.database_id == database_id, rate_line.c.prefix == _any(wanted)
            )
        )
        for r in rows:
            lines.setdefault((r.deck_kind, r.deck_id), []).append(
                RateLine(
                    prefix=r.prefix,
                    rate=r.rate,
                    increment=r.increment,
                    initial_increment=r.initial_increment,
                    connect_fee=r.connect_fee,
                    destination=r.destination,
                    effective_from=r.effective_from,
                    effective_to=r.effective_to,
                    direction=r.direction,
                    time_band=bands.parse(r.time_band),
                )
            )
    packages = {
        r.package_id: Package(r.route_id, RateDeck(lines.get(("package", r.package_id), [])))
        for r in await conn.execute(
            select(package.c.package_id, package.c.route_id).where(
                package.c.database_id == database_id
            )
        )
    }
    routes = {deck_id: RateDeck(deck) for (kind, deck_id), deck in lines.items() if kind == "route"}
    return packages, routes


async def load_plan(
    conn: AsyncConnection, *, tenant: Mapping[str, Any], events: Sequence[CdrSubmitted]
) -> tuple[TenantPlan, dict[str, str | None]]:
    """What rating these events needs of their tenant (a `tenant` row): the plan, with only
    the extensions and deck lines they can touch, and their API accounts' default packages.
    The consumer loads a batch with it and the quote route one call, so both price alike."""
    database_id = tenant["database_id"]
    plan = TenantPlan(home_country=tenant["country"], timezone=tenant["timezone"])
    plan.extensions = await load_extensions(
        conn,
        database_id=database_id,
        numbers=[n for e in events for n in (e.originating_number, e.destination_number)],
    )
    defaults = await load_default_packages(
        conn, database_id=database_id, accounts=[e.api_account for e in events]
    )
    plan.packages, plan.routes = await load_decks(
        conn, database_id=database_id, prefixes=all_prefixes(match_numbers(events, plan))
    )
    return plan, defaults


def all_prefixes(numbers: Iterable[str]) -> set[str]:
    return {n[:k] for n in numbers for k in range(1, len(n) + 1)}


async def insert_cdrs(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert-or-ignore on cdr_id: a redelivered event is not stored twice."""
    if rows:
        await conn.execute(pg_insert(cdr).on_conflict_do_nothing(index_elements=["cdr_id"]), rows)


async def fetch_cdrs(
    conn: AsyncConnection, *, cdr_ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(cdr).where(cdr.c.cdr_id == any_(bindparam("ids", list(cdr_ids), type_=_UUIDS)))
    )
    return [dict(r._mapping) for r in rows]

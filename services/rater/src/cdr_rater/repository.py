"""SQL of the rater: what rating a batch needs of a tenant, and storing rated CDRs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Text, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_rater import bands
from cdr_rater.pricing import Extension, Package, RateDeck, RateLine, TenantPlan
from cdrmodel.db import api_account, cdr, extension, package, rate_line, tenant

_TEXTS = ARRAY(Text)
_UUIDS = ARRAY(UUID(as_uuid=True))
_CHUNK = 5000  # deck lines per fetch while a tenant's decks load
T = TypeVar("T")


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
    return await _extensions(conn, database_id, extension.c.extension == _any(wanted))


async def _extensions(
    conn: AsyncConnection, database_id: str, *where: ColumnElement[bool]
) -> dict[str, Extension]:
    rows = await conn.execute(
        select(
            extension.c.extension, extension.c.package_id, extension.c.account, extension.c.client
        ).where(extension.c.database_id == database_id, *where)
    )
    return {r.extension: Extension(r.package_id, r.account, r.client) for r in rows}


async def load_default_packages(
    conn: AsyncConnection, *, database_id: str, accounts: Iterable[str]
) -> dict[str, str | None]:
    return await _defaults(
        conn, database_id, api_account.c.api_account_id == _any(sorted(set(accounts)))
    )


async def _defaults(
    conn: AsyncConnection, database_id: str, *where: ColumnElement[bool]
) -> dict[str, str | None]:
    rows = await conn.execute(
        select(api_account.c.api_account_id, api_account.c.default_package).where(
            api_account.c.database_id == database_id, *where
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
            lines.setdefault((r.deck_kind, r.deck_id), []).append(_line(r, _unshared))
    return await _assemble(conn, database_id, lines)


async def _assemble(
    conn: AsyncConnection, database_id: str, lines: dict[tuple[str, str], list[RateLine]]
) -> tuple[dict[str, Package], dict[str, RateDeck]]:
    """Every package of the tenant with its sell deck, and the route decks, from lines grouped
    by (deck_kind, deck_id); each deck's prefix index is built here, once."""
    packages = {
        r.package_id: Package(r.route_id, RateDeck(lines.get(("package", r.package_id), ())))
        for r in await conn.execute(
            select(package.c.package_id, package.c.route_id).where(
                package.c.database_id == database_id
            )
        )
    }
    routes = {deck_id: RateDeck(deck) for (kind, deck_id), deck in lines.items() if kind == "route"}
    return packages, routes


def _unshared(value: T) -> T:
    return value


def _line(r: Row[Any], share: Callable[[Any], Any]) -> RateLine:
    """A deck line from its row; `share` hands back one object per distinct value."""
    return RateLine(
        prefix=r.prefix,
        rate=share(r.rate),
        increment=r.increment,
        initial_increment=r.initial_increment,
        connect_fee=share(r.connect_fee),
        destination=share(r.destination),
        effective_from=share(r.effective_from),
        effective_to=share(r.effective_to),
        direction=share(r.direction),
        time_band=bands.parse(r.time_band),
    )


def all_prefixes(numbers: Iterable[str]) -> set[str]:
    return {n[:k] for n in numbers for k in range(1, len(n) + 1)}


async def store_cdrs(
    conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert-or-ignore on cdr_id, answering the stored version of every row: the new ones
    come back from RETURNING; only a replay's rows, already there, are read again (with their
    original feed_id and price, which is what gets published again)."""
    if not rows:
        return []
    result = await conn.execute(
        pg_insert(cdr).on_conflict_do_nothing(index_elements=["cdr_id"]).returning(*cdr.c),
        list(rows),
    )
    stored = [dict(r._mapping) for r in result]
    if len(stored) < len(rows):
        new = {r["cdr_id"] for r in stored}
        again = [r["cdr_id"] for r in rows if r["cdr_id"] not in new]
        stored += await fetch_cdrs(conn, cdr_ids=again)
    return stored


async def fetch_cdrs(
    conn: AsyncConnection, *, cdr_ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(cdr).where(cdr.c.cdr_id == any_(bindparam("ids", list(cdr_ids), type_=_UUIDS)))
    )
    return [dict(r._mapping) for r in rows]


# -- whole-tenant loads for the plan cache (cdr_rater.plans) --------------------------------


async def tenant_versions(conn: AsyncConnection, *, database_ids: Sequence[str]) -> dict[str, int]:
    """The one query a batch makes about configuration: each tenant's config_version."""
    rows = await conn.execute(
        select(tenant.c.database_id, tenant.c.config_version).where(
            tenant.c.database_id == _any(sorted(set(database_ids)))
        )
    )
    return {r.database_id: r.config_version for r in rows}


class _Shared:
    """One object per distinct value across a tenant's lines: a 100,000-line deck holds a few
    hundred distinct rates, fees, dates and names, not 100,000 copies of each."""

    def __init__(self) -> None:
        self._seen: dict[object, object] = {}

    def __call__(self, value: T) -> T:
        if value is None:
            return value
        return self._seen.setdefault(value, value)  # type: ignore[return-value]


async def load_tenant_config(
    conn: AsyncConnection, *, database_id: str
) -> tuple[dict[str, Any], TenantPlan, dict[str, str | None]] | None:
    """Everything rating needs of one tenant: (tenant row, whole plan, accounts' default
    packages), or None when the tenant does not exist. Deck lines are streamed in chunks
    so a large deck never sits in memory twice (rows and lines)."""
    row = (await conn.execute(select(tenant).where(tenant.c.database_id == database_id))).first()
    if row is None:
        return None
    extensions = await _extensions(conn, database_id)
    defaults = await _defaults(conn, database_id)
    share = _Shared()
    lines: dict[tuple[str, str], list[RateLine]] = {}
    result = await conn.stream(
        select(rate_line)
        .where(rate_line.c.database_id == database_id)
        .execution_options(yield_per=_CHUNK)
    )
    async for chunk in result.partitions():
        for r in chunk:
            lines.setdefault((r.deck_kind, r.deck_id), []).append(_line(r, share))
    packages, routes = await _assemble(conn, database_id, lines)
    plan = TenantPlan(
        home_country=row.country,
        timezone=row.timezone,
        extensions=extensions,
        packages=packages,
        routes=routes,
    )
    return dict(row._mapping), plan, defaults

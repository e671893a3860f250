"""SQL of the rater: a tenant's whole rating configuration (for cdr_rater.plans), the
versions that say when to reload it, storing rated CDRs, and creating the partitions of
`cdr` ahead."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Row, Text, any_, bindparam, select, text, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_rater import bands
from cdr_rater.pricing import Extension, Package, RateDeck, RateLine, TenantPlan
from cdrmodel.db import api_account, cdr, extension, package, rate_line, route, tenant

_TEXTS = ARRAY(Text)
_UUIDS = ARRAY(UUID(as_uuid=True))
_CHUNK = 5000  # deck lines per fetch while a tenant's decks load
T = TypeVar("T")


def _any(values: Sequence[str]) -> Any:
    """`= ANY($1)` with one array parameter: no limit on how many values a batch brings
    (an IN list is one bind parameter per value, and PostgreSQL allows 32,767)."""
    return any_(bindparam(None, list(values), type_=_TEXTS))


async def _extensions(conn: AsyncConnection, database_id: str) -> dict[str, Extension]:
    rows = await conn.execute(
        select(
            extension.c.extension, extension.c.package_id, extension.c.account, extension.c.client
        ).where(extension.c.database_id == database_id)
    )
    return {r.extension: Extension(r.package_id, r.account, r.client) for r in rows}


async def _defaults(conn: AsyncConnection, database_id: str) -> dict[str, str | None]:
    rows = await conn.execute(
        select(api_account.c.api_account_id, api_account.c.default_package).where(
            api_account.c.database_id == database_id
        )
    )
    return {r.api_account_id: r.default_package for r in rows}


DeckKey = tuple[str, str]  # (deck_kind, deck_id)
# A tenant's decks as loaded: each with the deck_version of its owner row when it was read.
Decks = dict[DeckKey, tuple[int, RateDeck]]


async def _deck_owners(
    conn: AsyncConnection, database_id: str
) -> tuple[dict[str, str | None], dict[DeckKey, int]]:
    """The tenant's packages (their route) and every deck's current version."""
    packages: dict[str, str | None] = {}
    versions: dict[DeckKey, int] = {}
    for r in await conn.execute(
        select(package.c.package_id, package.c.route_id, package.c.deck_version).where(
            package.c.database_id == database_id
        )
    ):
        packages[r.package_id] = r.route_id
        versions[("package", r.package_id)] = r.deck_version
    for route_id, version in await conn.execute(
        select(route.c.route_id, route.c.deck_version).where(route.c.database_id == database_id)
    ):
        versions[("route", route_id)] = version
    return packages, versions


async def _read_decks(
    conn: AsyncConnection, database_id: str, keys: set[DeckKey], *, every: bool
) -> dict[DeckKey, RateDeck]:
    """The decks `keys` name, their lines streamed in chunks so a large deck never sits in
    memory twice (rows and lines); `every`: all of the tenant's decks, with no key filter."""
    if not keys:
        return {}
    share = _Shared()
    lines: dict[DeckKey, list[RateLine]] = {key: [] for key in keys}
    stmt = select(rate_line).where(rate_line.c.database_id == database_id)
    if not every:
        stmt = stmt.where(tuple_(rate_line.c.deck_kind, rate_line.c.deck_id).in_(sorted(keys)))
    result = await conn.stream(stmt.execution_options(yield_per=_CHUNK))
    async for chunk in result.partitions():
        for r in chunk:
            found = lines.get((r.deck_kind, r.deck_id))
            if found is not None:  # a line whose owner row is gone is no deck
                found.append(_line(r, share))
    # Each deck's prefix index is built here, once per deck version.
    return {key: RateDeck(lines.pop(key)) for key in keys}


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


async def store_cdrs(
    conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert-or-ignore on cdr_id, answering the stored version of every row.

    One statement per batch: each column travels as one array and `unnest` turns them back
    into rows (no per-row parameters, no SQLAlchemy processing per value), and a COPY could
    not skip the rows a replay brings again. A new row comes back as given plus what the
    database assigned (feed_id, revision); only a replay's rows, already there, are read
    again, with their original feed_id and price, which is what gets published again."""
    if not rows:
        return []
    names = tuple(rows[0])
    params = tuple(_column_values(name, rows) for name in names)
    result = await conn.exec_driver_sql(_insert_sql(names), params)
    assigned = {r.cdr_id: r for r in result}
    stored = [
        {**row, "feed_id": new.feed_id, "revision": new.revision}
        for row in rows
        if (new := assigned.get(row["cdr_id"])) is not None
    ]
    if len(stored) < len(rows):
        again = [r["cdr_id"] for r in rows if r["cdr_id"] not in assigned]
        stored += await fetch_cdrs(conn, cdr_ids=again)
    return stored


@lru_cache(maxsize=8)
def _insert_sql(names: tuple[str, ...]) -> str:
    dialect = postgresql.dialect()
    arrays = ", ".join(
        f"${i}::{cdr.c[name].type.compile(dialect=dialect)}[]" for i, name in enumerate(names, 1)
    )
    columns = ", ".join(f'"{name}"' for name in names)
    return (
        f"INSERT INTO cdr ({columns}) SELECT * FROM unnest({arrays})"
        " ON CONFLICT (cdr_id) DO NOTHING RETURNING cdr_id, feed_id, revision"
    )


def _column_values(name: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
    if isinstance(cdr.c[name].type, JSONB):  # the driver takes jsonb as JSON text
        return [None if r[name] is None else json.dumps(r[name]) for r in rows]
    return [r[name] for r in rows]


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
    conn: AsyncConnection, *, database_id: str, reuse: Decks | None = None
) -> tuple[dict[str, Any], TenantPlan, Decks, dict[str, str | None]] | None:
    """Everything rating needs of one tenant: (tenant row, whole plan, its decks, accounts'
    default packages), or None when the tenant does not exist.

    `reuse`: the decks of the copy loaded before. Those whose version is unchanged are kept
    as they are (prefix index and all); the others are dropped from `reuse` before any line
    is read, so an old deck and its replacement are never both held, and only the changed
    decks are read again: an extension added, or one deck replaced among many, costs a few
    small queries, not the whole tenant."""
    row = (await conn.execute(select(tenant).where(tenant.c.database_id == database_id))).first()
    if row is None:
        return None
    extensions = await _extensions(conn, database_id)
    defaults = await _defaults(conn, database_id)
    owners, versions = await _deck_owners(conn, database_id)
    reuse = reuse if reuse is not None else {}
    for key in list(reuse):
        if reuse[key][0] != versions.get(key):
            del reuse[key]
    stale = {key for key in versions if key not in reuse}
    read = await _read_decks(conn, database_id, stale, every=not reuse)
    decks: Decks = {
        key: reuse[key] if key in reuse else (versions[key], read[key]) for key in versions
    }
    plan = TenantPlan(
        home_country=row.country,
        timezone=row.timezone,
        extensions=extensions,
        packages={
            package_id: Package(route_id, decks[("package", package_id)][1])
            for package_id, route_id in owners.items()
        },
        routes={key[1]: deck for key, (_, deck) in decks.items() if key[0] == "route"},
    )
    return dict(row._mapping), plan, decks, defaults


# -- the partitions of cdr (cdr_rater.partitions) -------------------------------------------


async def create_month_partition(conn: AsyncConnection, *, month: date, lock_timeout: float) -> str:
    """`cdr_create_month_partition` (migration cdr_partitions) in the caller's transaction,
    waiting at most `lock_timeout` seconds for each lock: `created`, `exists`, `busy`,
    `default_has_rows` or `name_taken`; a lock not granted in time raises (SQLSTATE 55P03)."""
    # SET takes no parameters; set_config(..., true) is SET LOCAL with one.
    await conn.execute(
        text("SELECT set_config('lock_timeout', :ms, true)"),
        {"ms": f"{max(1, round(lock_timeout * 1000))}ms"},
    )
    outcome = await conn.scalar(text("SELECT cdr_create_month_partition(:month)"), {"month": month})
    return str(outcome)


async def analyze_cdr(conn: AsyncConnection) -> None:
    """Statistics of `cdr` as a whole, and of each of its partitions (cdr_rater.partitions)."""
    await conn.execute(text("ANALYZE cdr"))

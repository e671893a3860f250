"""SQL of the WHMCS CDR functions (`/api/cdr`, seed 002): one tenant's calls in a range, its
billing accounts and numbers, and its package and route decks. Every statement is scoped to
the caller's database_id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_notifier.compat import CdrQuery
from cdrmodel.db import cdr, extension, package, route

# Only the columns the answer shows; two keys of `extra`, not the whole document.
_CDR_COLUMNS = (
    cdr.c.cdr_id,
    cdr.c.start_time,
    cdr.c.originating_number,
    cdr.c.destination_number,
    cdr.c.extra["clid"].astext.label("clid"),
    cdr.c.extra["caller_id_name"].astext.label("caller_name"),
    cdr.c.direction,
    cdr.c.call_type,
    cdr.c.destination_name,
    cdr.c.unrated_reason,
    cdr.c.account,
    cdr.c.disposition,
    cdr.c.duration,
    cdr.c.rate,
    cdr.c.total,
    cdr.c.external_id,
)


def cdr_statement(*, database_id: str, query: CdrQuery) -> Select[Any]:
    """Newest first, at most `query.limit` rows and one more (which tells there are more).

    The range and the equality on account (getCDR with an account) or client
    (getResellerCDR) are the leading columns of an index, (database_id, account,
    start_time), (database_id, client, start_time), or without either (database_id,
    start_time, cdr_id), so the plan is one backward range scan of that index that stops at
    the limit; the other filters are checked on the rows it reads. Nothing here may wrap
    start_time in an expression (a time zone shift is applied to the bounds instead)."""
    stmt = select(*_CDR_COLUMNS).where(
        cdr.c.database_id == database_id,
        cdr.c.start_time >= query.start,
        cdr.c.start_time < query.end,
    )
    if query.account is not None:
        stmt = stmt.where(cdr.c.account == query.account)
    if query.client is not None:
        stmt = stmt.where(cdr.c.client == query.client)
    if query.dispositions is not None:
        stmt = stmt.where(cdr.c.disposition.in_(query.dispositions))
    if query.direction is not None:
        stmt = stmt.where(cdr.c.direction == query.direction)
    if query.call_type is not None:
        stmt = stmt.where(cdr.c.call_type == query.call_type)
    if query.destination is not None:
        stmt = stmt.where(cdr.c.destination_number == query.destination)
    if query.call_billing is not None:
        stmt = stmt.where(cdr.c.call_billing == query.call_billing)
    # start_time alone: a second key (cdr_id) is in only one of the three indexes, and under
    # the other two it turned the plan into a bitmap scan of the whole range and a sort.
    return stmt.order_by(cdr.c.start_time.desc()).limit(query.limit + 1)


async def find_cdrs(
    conn: AsyncConnection, *, database_id: str, query: CdrQuery
) -> list[dict[str, Any]]:
    if query.dispositions == ():  # every flag 0
        return []
    rows = await conn.execute(cdr_statement(database_id=database_id, query=query))
    return [dict(r) for r in rows.mappings()]


async def call_accounts(
    conn: AsyncConnection, *, database_id: str, client: str | None
) -> list[str]:
    """The billing accounts of the tenant's extensions (of one reseller client's)."""
    stmt = (
        select(extension.c.account)
        .distinct()
        .where(extension.c.database_id == database_id, extension.c.account.is_not(None))
        .order_by(extension.c.account)
    )
    if client is not None:
        stmt = stmt.where(extension.c.client == client)
    return list((await conn.scalars(stmt)).all())


async def numbers(
    conn: AsyncConnection, *, database_id: str, client: str | None, limit: int
) -> list[str]:
    """The tenant's extensions (one reseller client's), the numbers calls can be to."""
    stmt = (
        select(extension.c.extension)
        .where(extension.c.database_id == database_id)
        .order_by(extension.c.extension)
        .limit(limit)
    )
    if client is not None:
        stmt = stmt.where(extension.c.client == client)
    return list((await conn.scalars(stmt)).all())


async def package_route(
    conn: AsyncConnection, *, database_id: str, package_id: str
) -> tuple[bool, str | None]:
    """(whether the package exists, its route id)."""
    row = (
        await conn.execute(
            select(package.c.route_id).where(
                package.c.database_id == database_id, package.c.package_id == package_id
            )
        )
    ).first()
    return (row is not None, row.route_id if row is not None else None)


async def route_name(conn: AsyncConnection, *, database_id: str, route_id: str) -> str | None:
    """The route's name; None when the tenant has no such route."""
    name: str | None = await conn.scalar(
        select(route.c.name).where(route.c.database_id == database_id, route.c.route_id == route_id)
    )
    return name


# One line per prefix of a deck: the outbound line in effect now, the all-day one before a
# time-banded one, the latest effective_from first; matching the search by destination name
# (case-insensitive, part of it) or by prefix (its start).
_DECK_LINES = """
SELECT DISTINCT ON (l.prefix) l.prefix, l.destination, l.increment, l.rate
FROM rate_line l
WHERE l.database_id = :db AND l.deck_kind = :kind AND l.deck_id = :deck
  AND l.direction = 'outbound'
  AND (l.effective_from IS NULL OR l.effective_from <= now())
  AND (l.effective_to IS NULL OR l.effective_to > now())
  AND (l.destination ILIKE :pattern ESCAPE '\\' OR l.prefix LIKE :prefix ESCAPE '\\')
ORDER BY l.prefix, (l.time_band IS NOT NULL), l.effective_from DESC NULLS LAST
LIMIT :n
"""

# Each package line with the route line that would cost the same call: the route deck's
# longest prefix of the package line's prefix (rule 3), looked up through the
# (database_id, prefix) index one candidate prefix at a time, for the page's lines only.
_PACKAGE_RATES = text(f"""
WITH page AS ({_DECK_LINES})
SELECT page.prefix, page.destination, page.increment, page.rate,
       real.increment AS real_increment, real.rate AS real_rate
FROM page
LEFT JOIN LATERAL (
    SELECT r.increment, r.rate
    FROM rate_line r
    WHERE r.database_id = :db AND r.deck_kind = 'route' AND r.deck_id = :route
      AND r.direction = 'outbound'
      AND r.prefix IN (SELECT left(page.prefix, k) FROM generate_series(1, length(page.prefix)) k)
      AND (r.effective_from IS NULL OR r.effective_from <= now())
      AND (r.effective_to IS NULL OR r.effective_to > now())
    ORDER BY length(r.prefix) DESC, (r.time_band IS NOT NULL), r.effective_from DESC NULLS LAST
    LIMIT 1
) real ON true
ORDER BY page.prefix
""")

_ROUTE_RATES = text(_DECK_LINES)


def _like_escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(query: str) -> dict[str, str]:
    """ILIKE / LIKE patterns for a search: part of a name; a prefix (a leading + dropped)."""
    digits = query[1:] if query.startswith("+") else query
    return {
        "pattern": f"%{_like_escaped(query)}%",
        "prefix": f"{_like_escaped(digits)}%" if digits.isdigit() else "",
    }


# The rate searches answer at most `limit` lines and one more, as find_cdrs does.


async def package_rates(
    conn: AsyncConnection,
    *,
    database_id: str,
    package_id: str,
    route_id: str | None,
    query: str,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        _PACKAGE_RATES,
        {
            "db": database_id,
            "kind": "package",
            "deck": package_id,
            "route": route_id,
            "n": limit + 1,
            **_search(query),
        },
    )
    return [dict(r) for r in rows.mappings()]


async def route_rates(
    conn: AsyncConnection, *, database_id: str, route_id: str, query: str, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        _ROUTE_RATES,
        {"db": database_id, "kind": "route", "deck": route_id, "n": limit + 1, **_search(query)},
    )
    return [dict(r) for r in rows.mappings()]

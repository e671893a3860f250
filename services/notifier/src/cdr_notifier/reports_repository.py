"""SQL of the reports (`/v1/reports/...`): one tenant's CDRs in a start-time range, grouped
in PostgreSQL.

Every statement is scoped to one `database_id` and ranges over `start_time` in
`[start, end)`, which the index `cdr (database_id, start_time, cdr_id)` serves. Local days,
hours and weekdays are `start_time AT TIME ZONE` the tenant's zone. "Answered" is the
disposition `ANSWERED`; talk time is the duration of answered calls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import cdr

# Fragments formatted into the statements below are this module's constants, never input:
# values travel as bound parameters. Both directions when :direction is null, else that one.
_DIRECTION = "(CAST(:direction AS text) IS NULL OR direction = CAST(:direction AS text))"
_RANGE = "database_id = :db AND start_time >= :start AND start_time < :end"


def _range_params(database_id: str, start: datetime, end: datetime, **more: Any) -> dict[str, Any]:
    return {"db": database_id, "start": start, "end": end, **more}


# --- unrated -------------------------------------------------------------------------------


def _unrated_where(database_id: str, reason: str | None) -> list[Any]:
    where = [cdr.c.database_id == database_id, cdr.c.rated.is_(False)]
    if reason is not None:
        where.append(cdr.c.unrated_reason == reason)
    return where


async def unrated_reasons(
    conn: AsyncConnection, *, database_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Unrated records per reason: those whose start time is in the range, and those without
    a start time (`invalid_start_time`) that arrived in it."""
    stmt = text(
        """
        SELECT unrated_reason AS reason, count(*) AS records,
               coalesce(sum(duration), 0) AS seconds
        FROM cdr
        WHERE database_id = :db AND NOT rated
          AND ((start_time >= :start AND start_time < :end)
               OR (start_time IS NULL AND received_at >= :start AND received_at < :end))
        GROUP BY unrated_reason
        ORDER BY count(*) DESC, unrated_reason
        """
    )
    rows = await conn.execute(stmt, _range_params(database_id, start, end))
    return [dict(r) for r in rows.mappings()]


async def unrated_page(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    reason: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """The next `limit` unrated records in (time, cdr_id) order, where time is the start time,
    or the arrival for records without one. Two keyset scans, one per kind, each on its own
    index order (start time in the range; the few without one by arrival), merged."""
    base = _unrated_where(database_id, reason)
    timed = (
        select(cdr, cdr.c.start_time.label("listed_at"))
        .where(*base, cdr.c.start_time >= start, cdr.c.start_time < end)
        .order_by(cdr.c.start_time, cdr.c.cdr_id)
        .limit(limit)
    )
    untimed = (
        select(cdr, cdr.c.received_at.label("listed_at"))
        .where(
            *base,
            cdr.c.start_time.is_(None),
            cdr.c.received_at >= start,
            cdr.c.received_at < end,
        )
        .order_by(cdr.c.received_at, cdr.c.cdr_id)
        .limit(limit)
    )
    if after is not None:
        timed = timed.where(tuple_(cdr.c.start_time, cdr.c.cdr_id) > tuple_(*after))
        untimed = untimed.where(tuple_(cdr.c.received_at, cdr.c.cdr_id) > tuple_(*after))
    both = union_all(timed, untimed).subquery()
    stmt = select(both).order_by(both.c.listed_at, both.c.cdr_id).limit(limit)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


# --- agents --------------------------------------------------------------------------------

_AGENT_ORDER = {
    "incoming": "incoming_answered DESC, outgoing_answered DESC",
    "outgoing": "outgoing_answered DESC, incoming_answered DESC",
    "talk_time": "(incoming_talk_seconds + outgoing_talk_seconds) DESC",
    "extension": "extension",
}
AGENT_SORTS = tuple(_AGENT_ORDER)


async def agents(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    sort: str,
) -> list[dict[str, Any]]:
    """Per extension (and the billing account it had): calls, answered calls and talk time,
    incoming and outgoing, and what they were priced; the last row (`is_total`) is the whole
    range. On-net calls are the calling extension's outgoing calls, as the rater records them."""
    order = _AGENT_ORDER[sort]
    stmt = text(
        """
        WITH per AS (
          SELECT extension, account,
            GROUPING(extension, account) <> 0 AS is_total,
            count(*) FILTER (WHERE direction = 'inbound') AS incoming_calls,
            count(*) FILTER (WHERE direction = 'inbound' AND disposition = 'ANSWERED')
              AS incoming_answered,
            coalesce(sum(duration) FILTER (
              WHERE direction = 'inbound' AND disposition = 'ANSWERED'), 0)
              AS incoming_talk_seconds,
            count(*) FILTER (WHERE direction = 'outbound') AS outgoing_calls,
            count(*) FILTER (WHERE direction = 'outbound' AND disposition = 'ANSWERED')
              AS outgoing_answered,
            coalesce(sum(duration) FILTER (
              WHERE direction = 'outbound' AND disposition = 'ANSWERED'), 0)
              AS outgoing_talk_seconds,
            coalesce(sum(total), 0) AS total
          FROM cdr
          WHERE """
        + _RANGE
        + """
          GROUP BY GROUPING SETS ((extension, account), ())
        )
        SELECT * FROM per
        ORDER BY is_total, """
        + order
        + """, extension NULLS LAST, account NULLS LAST
        """
    )
    rows = await conn.execute(stmt, _range_params(database_id, start, end))
    return [dict(r) for r in rows.mappings()]


# --- answer ratio --------------------------------------------------------------------------

# What each `by` groups on. `number` is the other party (the callee of an outbound call, the
# caller of an inbound one); report_shapes.country_of turns numbers into countries. On-net
# calls (2T) have an extension there, which is no country.
_RATIO_KEYS = {
    "country": "CASE WHEN call_type = '2T' THEN NULL ELSE nullif(normalized_number, '') END",
    "day": "(start_time AT TIME ZONE :tz)::date",
    "extension": "extension",
}
RATIO_KEYS = tuple(_RATIO_KEYS)


def _ratio_statement(key: str) -> Any:
    # The key is computed below the GROUP BY so its bound zone appears once.
    return text(
        f"""
        SELECT key, GROUPING(key) <> 0 AS is_total,
               count(*) AS calls,
               count(*) FILTER (WHERE disposition = 'ANSWERED') AS answered
        FROM (
          SELECT {_RATIO_KEYS[key]} AS key, disposition
          FROM cdr
          WHERE {_RANGE} AND {_DIRECTION}
        ) AS calls
        GROUP BY GROUPING SETS ((key), ())
        ORDER BY is_total, key NULLS LAST
        """
    )


async def answer_ratio(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    by: str,
    timezone: str,
    direction: str | None,
) -> AsyncIterator[dict[str, Any]]:
    """Calls and answered calls per `by` key, then the total row (`is_total`). Streamed: for
    `country` the keys are the distinct numbers, which the caller folds into countries."""
    params = _range_params(database_id, start, end, tz=timezone, direction=direction)
    result = await conn.stream(_ratio_statement(by), params)
    async for row in result.mappings():
        yield dict(row)


# --- peak hours ----------------------------------------------------------------------------


def _bucket(expr: str, by_weekday: bool) -> str:
    return f"extract(isodow FROM {expr} AT TIME ZONE :tz)::int" if by_weekday else "0"


async def hour_counts(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    timezone: str,
    direction: str | None,
    by_weekday: bool,
) -> list[dict[str, Any]]:
    """Calls per local hour of day (and ISO weekday, 1 = Monday, when `by_weekday`; else 0),
    every bucket present, empty ones with zeros."""
    weekday = _bucket("start_time", by_weekday)
    days = "generate_series(1, 7)" if by_weekday else "(VALUES (0))"
    stmt = text(
        f"""
        WITH counted AS (
          SELECT {weekday} AS weekday,
                 extract(hour FROM start_time AT TIME ZONE :tz)::int AS hour,
                 count(*) AS calls,
                 count(*) FILTER (WHERE disposition = 'ANSWERED') AS answered,
                 count(*) FILTER (WHERE direction = 'inbound') AS inbound,
                 count(*) FILTER (WHERE direction = 'outbound') AS outbound,
                 coalesce(sum(duration) FILTER (WHERE disposition = 'ANSWERED'), 0)
                   AS talk_seconds
          FROM cdr
          WHERE {_RANGE} AND {_DIRECTION}
          GROUP BY 1, 2
        )
        SELECT d.weekday, h.hour,
               coalesce(c.calls, 0) AS calls, coalesce(c.answered, 0) AS answered,
               coalesce(c.inbound, 0) AS inbound, coalesce(c.outbound, 0) AS outbound,
               coalesce(c.talk_seconds, 0) AS talk_seconds
        FROM {days} AS d(weekday)
        CROSS JOIN generate_series(0, 23) AS h(hour)
        LEFT JOIN counted c ON c.weekday = d.weekday AND c.hour = h.hour
        ORDER BY d.weekday, h.hour
        """
    )
    params = _range_params(database_id, start, end, tz=timezone, direction=direction)
    rows = await conn.execute(stmt, params)
    return [dict(r) for r in rows.mappings()]


async def concurrency(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    timezone: str,
    direction: str | None,
    by_weekday: bool,
) -> list[dict[str, Any]]:
    """The most calls in progress at once, per bucket (rows with `peak_at` null) and over the
    whole range (the one row with `peak_at`: the first instant it was reached).

    Exact, in one statement: a call is in progress over `[start_time, start_time + duration)`
    (calls of 0 s never are). Each call gives +1 at its start and -1 at its end; the running
    sum in time order (ends before starts at one instant) is the number in progress. The
    level can only peak at a start, at the range's start (calls carried in) or at the start
    of a local hour (calls carried into that bucket), so those are the instants sampled.
    Calls that began up to a day before the range are read for what they carry in: no
    duration is longer (contract §2, 50416).
    """
    bucket = _bucket("at", by_weekday)
    stmt = text(
        f"""
        WITH live AS (
          SELECT start_time AS s, start_time + make_interval(secs => duration) AS e
          FROM cdr
          WHERE database_id = :db
            AND start_time >= CAST(:start AS timestamptz) - interval '1 day'
            AND start_time < :end AND duration > 0 AND {_DIRECTION}
        ),
        events AS (
          SELECT s AS at, 1 AS delta FROM live WHERE e > :start
          UNION ALL
          SELECT e, -1 FROM live WHERE e > :start AND e < :end
          UNION ALL
          SELECT CAST(:start AS timestamptz), 0
          UNION ALL
          SELECT b, 0 FROM (
            SELECT g AT TIME ZONE :tz AS b
            FROM generate_series(
              date_trunc('hour', CAST(:start AS timestamptz) AT TIME ZONE :tz),
              CAST(:end AS timestamptz) AT TIME ZONE :tz,
              interval '1 hour') AS g
          ) hours
          WHERE b > :start AND b < :end
        ),
        levels AS (
          SELECT at, delta,
                 sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS level
          FROM events
        ),
        sampled AS (
          SELECT at, level, {bucket} AS weekday,
                 extract(hour FROM at AT TIME ZONE :tz)::int AS hour
          FROM levels
          WHERE delta >= 0 AND at >= :start AND at < :end
        )
        SELECT weekday, hour, max(level) AS level, NULL::timestamptz AS peak_at
        FROM sampled GROUP BY weekday, hour
        UNION ALL
        (SELECT NULL, NULL, level, at FROM sampled ORDER BY level DESC, at LIMIT 1)
        """
    )
    params = _range_params(database_id, start, end, tz=timezone, direction=direction)
    rows = await conn.execute(stmt, params)
    return [dict(r) for r in rows.mappings()]


__all__ = [
    "AGENT_SORTS",
    "RATIO_KEYS",
    "agents",
    "answer_ratio",
    "concurrency",
    "hour_counts",
    "unrated_page",
    "unrated_reasons",
]

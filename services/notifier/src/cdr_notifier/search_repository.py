"""SQL of `GET /v1/cdrs`: one tenant's CDRs, filtered, in (start_time, cdr_id) order; a page
at a time by keyset, or the whole result as CSV that PostgreSQL renders (COPY).

Order and paging. Rows come by start time, the cdr id breaking ties: the order of the index
(database_id, start_time, cdr_id), so a page is one range scan of it that stops after
`limit + 1` entries, however deep the cursor is. Rows without a start time (held unrated,
`invalid_start_time`) sort after every timed one (the index's NULLS LAST) and are reached
only when no time bound is given; they are a second range of the same index
(`start_time IS NULL AND cdr_id > …`), so the one page that crosses from timed rows to
untimed ones runs two scans. A cursor is the position of the last row of its page, never an
offset: rows stored or re-rated while a client pages neither shift nor repeat what it reads.
The filters besides the time range (caller, disposition, …) are checked on the rows the
scan visits.

Export. `COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)` computes the record's fields in
SQL (`record_sql.field_sql`: the values `cdrmodel.record.render_record` gives,
`csvout.RECORD_COLUMNS` plus `extra`), so Python only passes bytes along: asyncpg hands
each chunk it reads to a bounded queue and stops reading the socket while the queue is
full, and the HTTP response takes chunks off it. Memory holds a few chunks whatever the size of the export.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_notifier.csvout import RECORD_COLUMNS, record_header
from cdr_notifier.record_sql import field_sql, rest_sql, use_zone

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{1,200}")
_MICROSECOND = timedelta(microseconds=1)

# What render_record reads from a row: the page query selects these and no more (not the
# pricing explanation, which can be large).
RECORD_SOURCE_COLUMNS = (
    "cdr_id",
    "database_id",
    "api_account",
    "external_id",
    "originating_number",
    "destination_number",
    "start_time",
    "start_time_raw",
    "duration",
    "disposition",
    "ring_seconds",
    "account_code",
    "extra",
    "rated",
    "unrated_reason",
    "direction",
    "extension",
    "account",
    "call_type",
    "call_billing",
    "destination_name",
    "matched_prefix",
    "billed_seconds",
    "rate",
    "total",
    "cost",
    "currency",
    "feed_id",
    "revision",
    "recording_url",
)


@dataclass(frozen=True)
class CdrSearch:
    """The filters of one search, already resolved: times aware, texts as given."""

    database_id: str
    start_from: datetime | None = None  # inclusive
    start_to: datetime | None = None  # exclusive
    rated: bool | None = None
    call_types: tuple[str, ...] = ()
    dispositions: tuple[str, ...] = ()
    billing_groups: tuple[str, ...] = ()  # package ids
    min_seconds: int | None = None
    max_seconds: int | None = None
    caller: str | None = None  # prefix of the originating number
    destination: str | None = None  # prefix of the destination number

    @property
    def timed_only(self) -> bool:
        """A time bound excludes the rows without a start time."""
        return self.start_from is not None or self.start_to is not None


@dataclass(frozen=True)
class Position:
    """Where a page ended: the (start_time, cdr_id) of its last row."""

    start_time: datetime | None
    cdr_id: uuid.UUID

    def encode(self) -> str:
        when = "-" if self.start_time is None else str((self.start_time - _EPOCH) // _MICROSECOND)
        raw = f"{when}.{self.cdr_id.hex}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Position:
        """The position a cursor names; ValueError for anything `encode` did not make."""
        if not _CURSOR_TEXT.fullmatch(text):
            raise ValueError("not a cursor")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("not a cursor") from exc
        when, dot, cdr_hex = raw.partition(".")
        if not dot or len(cdr_hex) != 32:
            raise ValueError("not a cursor")
        cdr_id = uuid.UUID(hex=cdr_hex)
        if when == "-":
            return cls(None, cdr_id)
        if not when.lstrip("-").isdigit():
            raise ValueError("not a cursor")
        try:
            start = _EPOCH + int(when) * _MICROSECOND
        except OverflowError as exc:
            raise ValueError("not a cursor") from exc
        return cls(start, cdr_id)


def like_prefix(value: str) -> str:
    """A LIKE pattern (escape character `\\`) matching the strings that start with `value`:
    `%`, `_` and `\\` in it match only themselves."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@dataclass
class _Query:
    """WHERE conditions with asyncpg's numbered parameters."""

    params: list[Any] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)

    def arg(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def where(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions)


def _filtered(search: CdrSearch, *, timed: bool, after: Position | None) -> _Query:
    """The conditions of one range of the index: the timed rows (after `after`, which then
    has a start time) or the untimed ones (after `after`, which then has none)."""
    q = _Query()
    q.where(f"database_id = {q.arg(search.database_id)}")
    if timed:
        if after is not None:
            assert after.start_time is not None
            q.where(f"(start_time, cdr_id) > ({q.arg(after.start_time)}, {q.arg(after.cdr_id)})")
        else:
            q.where("start_time IS NOT NULL")
        if search.start_from is not None:
            q.where(f"start_time >= {q.arg(search.start_from)}")
        if search.start_to is not None:
            q.where(f"start_time < {q.arg(search.start_to)}")
    else:
        q.where("start_time IS NULL")
        if after is not None:
            q.where(f"cdr_id > {q.arg(after.cdr_id)}")
    if search.rated is not None:
        q.where("rated" if search.rated else "NOT rated")
    if search.call_types:
        q.where(f"call_type = ANY({q.arg(list(search.call_types))}::text[])")
    if search.dispositions:
        q.where(f"disposition = ANY({q.arg(list(search.dispositions))}::text[])")
    if search.billing_groups:
        q.where(f"package_id = ANY({q.arg(list(search.billing_groups))}::text[])")
    if search.min_seconds is not None:
        q.where(f"duration >= {q.arg(search.min_seconds)}")
    if search.max_seconds is not None:
        q.where(f"duration <= {q.arg(search.max_seconds)}")
    if search.caller:
        q.where(f"originating_number LIKE {q.arg(like_prefix(search.caller))} ESCAPE '\\'")
    if search.destination:
        q.where(f"destination_number LIKE {q.arg(like_prefix(search.destination))} ESCAPE '\\'")
    return q


_ORDER = "ORDER BY cdr.start_time, cdr.cdr_id"  # ASC NULLS LAST: the index's own order; qualified,
# since the export has output columns of the same names


def page_sql(
    search: CdrSearch, *, timed: bool, after: Position | None, limit: int
) -> tuple[str, list[Any]]:
    """The statement of one range scan of a page (and its parameters)."""
    q = _filtered(search, timed=timed, after=after)
    columns = ", ".join(RECORD_SOURCE_COLUMNS)
    return f"SELECT {columns} FROM cdr WHERE {q.sql} {_ORDER} LIMIT {q.arg(limit)}", q.params


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy one (its jsonb codec decodes `extra`)."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


async def search_page(
    conn: AsyncConnection, search: CdrSearch, *, after: Position | None, limit: int
) -> tuple[list[asyncpg.Record], Position | None]:
    """Up to `limit` rows after `after`, and the position to go on from (None at the end).

    One more row than `limit` is read, so the last page says it is the last."""
    db = await driver_connection(conn)
    rows: list[asyncpg.Record] = []
    if after is None or after.start_time is not None:
        sql, params = page_sql(search, timed=True, after=after, limit=limit + 1)
        rows = list(await db.fetch(sql, *params))
    if len(rows) <= limit and not search.timed_only:
        untimed_after = after if after is not None and after.start_time is None else None
        sql, params = page_sql(
            search, timed=False, after=untimed_after, limit=limit + 1 - len(rows)
        )
        rows += await db.fetch(sql, *params)
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, Position(page[-1]["start_time"], page[-1]["cdr_id"])


def export_sql(
    search: CdrSearch, *, after: Position | None, currency: str
) -> list[tuple[str, list[Any]]]:
    """The SELECTs whose rows are the export's lines, in page order: every matching timed
    row from `after` on, then (without a time bound) the untimed ones. Each is one range
    scan of the index, read in its order, so nothing is sorted and rows flow at once."""
    fields = field_sql(currency)
    select = ", ".join(f'{fields[c]} AS "{c}"' for c in RECORD_COLUMNS)
    select += f', {rest_sql(RECORD_COLUMNS, recording=False)} AS "extra"'
    ranges: list[_Query] = []
    if after is None or after.start_time is not None:
        ranges.append(_filtered(search, timed=True, after=after))
    if not search.timed_only:
        untimed_after = after if after is not None and after.start_time is None else None
        ranges.append(_filtered(search, timed=False, after=untimed_after))
    return [(f"SELECT {select} FROM cdr WHERE {q.sql} {_ORDER}", q.params) for q in ranges]


_DONE = object()


@dataclass
class _Failed:
    error: BaseException


# Planner settings of the export's transaction. A COPY has no LIMIT, so for a whole tenant
# filtered on a column no index leads with (`caller=12`), a sequential scan and a sort look
# cheaper than the index in its order, and nothing streams until the sort ends (and the
# sort spills a big tenant to disk). The export must read the index in page order.
EXPORT_PLANNER = {"enable_seqscan": "off", "enable_sort": "off"}


async def _copy_into(
    engine: AsyncEngine,
    queue: asyncio.Queue[object],
    statements: Sequence[tuple[str, list[Any]]],
    timezone: str,
) -> None:
    """Run the COPYs in one snapshot, each chunk into `queue` (waiting while it is full);
    then `_DONE`, or the error."""
    try:
        async with engine.connect() as conn:
            db = await driver_connection(conn)
            async with db.transaction(isolation="repeatable_read", readonly=True):
                await use_zone(db, timezone)
                for name, value in EXPORT_PLANNER.items():
                    await db.execute("SELECT set_config($1, $2, true)", name, value)
                for n, (sql, params) in enumerate(statements):
                    await db.copy_from_query(
                        sql,
                        *params,
                        output=queue.put,
                        format="csv",
                        header=n == 0,
                        timeout=None,
                    )
    except Exception as exc:
        await queue.put(_Failed(exc))
    else:
        await queue.put(_DONE)


async def export_csv(
    engine: AsyncEngine,
    search: CdrSearch,
    *,
    after: Position | None,
    timezone: str,
    currency: str,
    queue_chunks: int = 4,
) -> AsyncGenerator[bytes, None]:
    """The CSV export, header first, as the chunks PostgreSQL sends.

    At most `queue_chunks` chunks wait between the database and the client: while the
    client reads slowly the COPY waits (asyncpg stops reading its socket). Closing the
    iterator early cancels the COPY."""
    statements = export_sql(search, after=after, currency=currency)
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_chunks)
    if not statements:  # a cursor past the untimed rows of a search with a time bound
        yield (",".join(record_header()) + "\n").encode()
        return
    task = asyncio.create_task(_copy_into(engine, queue, statements, timezone))
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, bytes | bytearray)  # asyncpg hands a bytearray
            yield bytes(item)
    finally:
        if not task.done():
            task.cancel()
        with suppress(asyncio.CancelledError):
            await task

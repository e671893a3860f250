"""Query APIs for API accounts: `GET /v1/cdrs`, search and export (an account sees only its
own tenant). The SQL is in `search_repository`; docs/queries.md describes the parameters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field

from cdr_notifier import search_repository as repo
from cdr_notifier.csvout import CSV_RESPONSES, csv_response
from cdr_notifier.deps import PrincipalDep, StateDep
from cdr_notifier.search_repository import CdrSearch, Position
from cdrmodel.errors import Unprocessable, error_responses
from cdrmodel.principals import Principal
from cdrmodel.record import CdrRecord, render_record
from cdrmodel.timeutil import MAX_YEAR, MIN_YEAR, in_zone
from cdrmodel.validation import NO_CONTROL_PATTERN, Name, NonNegativeInt4

router = APIRouter(tags=["queries"], responses=error_responses(401, 403, 422, 503))

DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION")
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def _disposition(value: str) -> str:
    upper = value.strip().upper()
    if upper not in DISPOSITIONS:
        raise ValueError(f"must be one of {', '.join(DISPOSITIONS)}")
    return upper


Disposition = Annotated[str, AfterValidator(_disposition)]


class CdrPage(BaseModel):
    cdrs: list[CdrRecord]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def billing_period_bounds(period: str, timezone: str) -> tuple[datetime, datetime]:
    """The calendar month `YYYY-MM` in the tenant's zone: [its first midnight, the next
    month's first midnight)."""
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise Unprocessable(f"billing_period: must be a month as YYYY-MM (got {period!r})")
    year, month = int(match[1]), int(match[2])
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise Unprocessable(f"billing_period: the year must be within {MIN_YEAR}-{MAX_YEAR}")
    zone = _zone(timezone)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, end


def _time(value: datetime | None, name: str, timezone: str) -> datetime | None:
    if value is None:
        return None
    try:
        return in_zone(value, timezone)
    except Unprocessable as exc:
        raise Unprocessable(f"{name}: {exc.message}") from exc


def build_search(
    principal: Principal,
    *,
    start_from: datetime | None,
    start_to: datetime | None,
    billing_period: str | None,
    billing_group: list[str],
    min_seconds: int | None,
    max_seconds: int | None,
    caller: str | None,
    destination: str | None,
    call_type: list[str],
    disposition: list[str],
    rated: bool | None,
) -> CdrSearch:
    """The parameters checked against each other and resolved in the tenant's zone."""
    zone = principal.timezone
    low = _time(start_from, "from", zone)
    high = _time(start_to, "to", zone)
    if low is not None and high is not None and high < low:
        raise Unprocessable("to: must not be before from")
    if billing_period is not None:
        month_start, month_end = billing_period_bounds(billing_period, zone)
        low = month_start if low is None else max(low, month_start)
        high = month_end if high is None else min(high, month_end)
    if min_seconds is not None and max_seconds is not None and min_seconds > max_seconds:
        raise Unprocessable("min_seconds: must not be greater than max_seconds")
    return CdrSearch(
        database_id=principal.database_id,
        start_from=low,
        start_to=high,
        rated=rated,
        call_types=tuple(call_type),
        dispositions=tuple(disposition),
        billing_groups=tuple(billing_group),
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        caller=caller or None,
        destination=destination or None,
    )


def _position(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    try:
        return Position.decode(cursor)
    except ValueError as exc:
        raise Unprocessable("cursor: not a cursor this API gave out (pass next_cursor)") from exc


@router.get(
    "/v1/cdrs",
    response_model=CdrPage,
    summary="Search the account's tenant's CDRs, by start time (cursor paging), or export CSV",
    responses=CSV_RESPONSES,
)
async def list_cdrs(
    principal: PrincipalDep,
    state: StateDep,
    from_: datetime | None = Query(
        None,
        alias="from",
        description="Calls starting at or after, ISO 8601; without an offset, the tenant's "
        "time zone",
    ),
    to: datetime | None = Query(None, description="Calls starting before (exclusive); as `from`"),
    billing_period: str | None = Query(
        None,
        description="YYYY-MM: that calendar month in the tenant's time zone (with `from` / "
        "`to`, the overlap)",
        max_length=7,
    ),
    billing_group: list[Name] = Query(
        [], description="The package the call was rated on (repeat for any of several)"
    ),
    min_seconds: NonNegativeInt4 | None = Query(None, description="Duration at least"),
    max_seconds: NonNegativeInt4 | None = Query(None, description="Duration at most"),
    caller: Name | None = Query(
        None, description="Originating number starts with this (`%`, `_` match themselves)"
    ),
    destination: Name | None = Query(None, description="Destination number starts with this"),
    call_type: list[Name] = Query([], description="Seed 001 code, exact (repeat for several)"),
    disposition: list[Disposition] = Query(
        [], description="ANSWERED, NO ANSWER, BUSY, FAILED or CONGESTION (repeat for several)"
    ),
    rated: bool | None = None,
    cursor: str | None = Query(
        None,
        max_length=200,
        pattern=NO_CONTROL_PATTERN,
        description="next_cursor of the previous page",
    ),
    limit: int = Query(100, ge=1, le=1000, description="Rows per page (JSON only)"),
    format: Literal["json", "csv"] = Query(
        "json", description="csv: every matching row from `cursor` on, streamed"
    ),
) -> Any:
    search = build_search(
        principal,
        start_from=from_,
        start_to=to,
        billing_period=billing_period,
        billing_group=billing_group,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        caller=caller,
        destination=destination,
        call_type=call_type,
        disposition=disposition,
        rated=rated,
    )
    after = _position(cursor)
    if format == "csv":
        return await _export(state, principal, search, after)
    async with state.engine.connect() as conn:
        rows, next_position = await repo.search_page(conn, search, after=after, limit=limit)
    return {
        "cdrs": [render_record(r, timezone=principal.timezone) for r in rows],
        "next_cursor": next_position.encode() if next_position is not None else None,
    }


async def _export(
    state: StateDep, principal: Principal, search: CdrSearch, after: Position | None
) -> Response:
    chunks = repo.export_csv(
        state.engine,
        search,
        after=after,
        timezone=principal.timezone,
        currency=principal.currency,
    )
    # The first chunk (the header) is awaited here, so a database that cannot be reached is
    # still an error answer (503), not a 200 that breaks off.
    first = await anext(chunks)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return csv_response(body(), f"cdrs-{principal.database_id}.csv")

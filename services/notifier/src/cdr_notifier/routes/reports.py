"""Reports for API accounts (contract §4 "Queries"; seeds 000 and 003): unrated records,
answered calls per representative, answer ratio, peak hours, each over a date range of the
caller's tenant, as JSON or CSV (docs/queries.md, Reports)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from cdr_notifier import reports_repository as sql
from cdr_notifier.csvout import (
    CSV_RESPONSES,
    RECORD_COLUMNS,
    csv_bytes,
    csv_chunks,
    csv_response,
    record_row,
)
from cdr_notifier.deps import PrincipalDep, StateDep
from cdr_notifier.report_shapes import (
    ReportRange,
    country_name,
    country_of,
    decode_cursor,
    encode_cursor,
    ratio,
    report_range,
)
from cdrmodel.errors import Unprocessable, error_responses
from cdrmodel.money import fmt8
from cdrmodel.principals import Principal
from cdrmodel.record import CdrRecord, render_record
from cdrmodel.validation import Name

router = APIRouter(tags=["reports"], responses=error_responses(401, 403, 422, 503))

Format = Literal["json", "csv"]
Direction = Literal["inbound", "outbound"]
_FROM = Query(
    None,
    alias="from",
    description="YYYY-MM-DD (from that local midnight) or ISO 8601 (no offset: the tenant's "
    "zone). Default: 30 days before `to`",
)
_TO = Query(
    None,
    description="YYYY-MM-DD (through the end of that day) or ISO 8601 (excluded). Default: the "
    "end of today in the tenant's zone. At most 366 days after `from`",
)
_FORMAT = Query("json", description="`csv` for the report's rows as CSV")
_DIRECTION = Query(None, description="Only inbound or only outbound calls (default: both)")


class RangeRead(BaseModel):
    from_: str = Field(alias="from", description="Start (included), in the tenant's zone")
    to: str = Field(description="End (excluded), in the tenant's zone")
    timezone: str


def _range(principal: Principal, from_: str | None, to: str | None) -> ReportRange:
    return report_range(from_, to, timezone=principal.timezone, now=datetime.now(UTC))


def _range_body(span: ReportRange) -> dict[str, Any]:
    return {"from": span.local(span.start), "to": span.local(span.end), "timezone": span.timezone}


def _filename(report: str, principal: Principal, span: ReportRange) -> str:
    day = span.start.astimezone(span.zone).date().isoformat()
    return f"{report}-{principal.database_id}-{day}.csv"


def _csv(
    report: str,
    principal: Principal,
    span: ReportRange,
    columns: Sequence[str],
    rows: Iterable[Any],
) -> Response:
    body = csv_bytes(columns, ([row.get(c) for c in columns] for row in rows))
    return csv_response(body, _filename(report, principal, span))


# --- GET /v1/reports/unrated ---------------------------------------------------------------

UNRATED_COLUMNS = (*RECORD_COLUMNS, "start_time_raw", "received_at")


class ReasonCount(BaseModel):
    reason: str
    records: int
    seconds: int = Field(description="Their durations added up")


class UnratedRecord(CdrRecord):
    received_at: str | None = Field(None, description="When ingest accepted it")


class UnratedReport(RangeRead):
    reasons: list[ReasonCount] = Field(description="Most records first")
    records_total: int = Field(description="Unrated records in the range, all reasons")
    records: list[UnratedRecord] = Field(description="One page, oldest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


def _unrated_record(row: dict[str, Any], principal: Principal, span: ReportRange) -> dict[str, Any]:
    record = render_record(row, timezone=principal.timezone)
    record["received_at"] = span.local(row["received_at"])
    return record


@router.get(
    "/v1/reports/unrated",
    response_model=UnratedReport,
    responses=CSV_RESPONSES,
    summary="Unrated records (seed 000): counts per reason and the records, paged",
)
async def unrated_report(
    principal: PrincipalDep,
    state: StateDep,
    from_: str | None = _FROM,
    to: str | None = _TO,
    reason: Name | None = Query(None, description="Only the records held for this reason"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor of the last page"),
    limit: int = Query(100, ge=1, le=1000, description="Records per page"),
    format: Format = _FORMAT,
    part: Literal["records", "reasons"] = Query(
        "records", description="With format=csv: every record of the range, or the reason counts"
    ),
) -> Any:
    span = _range(principal, from_, to)
    after = decode_cursor(cursor) if cursor else None
    db = principal.database_id
    if format == "csv" and part == "reasons":
        async with state.engine.connect() as conn:
            reasons = await sql.unrated_reasons(
                conn, database_id=db, start=span.start, end=span.end
            )
        return _csv("unrated-reasons", principal, span, ("reason", "records", "seconds"), reasons)
    if format == "csv":

        async def pages() -> AsyncIterator[list[list[Any]]]:
            position = after
            while True:
                async with state.engine.connect() as conn:
                    rows = await sql.unrated_page(
                        conn,
                        database_id=db,
                        start=span.start,
                        end=span.end,
                        reason=reason,
                        after=position,
                        limit=1000,
                    )
                yield [
                    record_row(_unrated_record(r, principal, span), UNRATED_COLUMNS) for r in rows
                ]
                if len(rows) < 1000:
                    return
                position = (rows[-1]["listed_at"], rows[-1]["cdr_id"])

        header = [*UNRATED_COLUMNS, "extra"]
        return csv_response(csv_chunks(header, pages()), _filename("unrated", principal, span))
    async with state.engine.connect() as conn:
        reasons = await sql.unrated_reasons(conn, database_id=db, start=span.start, end=span.end)
        rows = await sql.unrated_page(
            conn,
            database_id=db,
            start=span.start,
            end=span.end,
            reason=reason,
            after=after,
            limit=limit,
        )
    last = rows[-1] if len(rows) == limit else None
    return {
        **_range_body(span),
        "reasons": reasons,
        "records_total": sum(r["records"] for r in reasons),
        "records": [_unrated_record(r, principal, span) for r in rows],
        "next_cursor": encode_cursor(last["listed_at"], last["cdr_id"]) if last else None,
    }


# --- GET /v1/reports/agents ----------------------------------------------------------------

AGENT_COUNTS = (
    "incoming_calls",
    "incoming_answered",
    "incoming_talk_seconds",
    "outgoing_calls",
    "outgoing_answered",
    "outgoing_talk_seconds",
)
AGENT_COLUMNS = ("extension", "account", *AGENT_COUNTS, "total", "currency")


class AgentCounts(BaseModel):
    incoming_calls: int = Field(description="Inbound calls to the extension")
    incoming_answered: int
    incoming_talk_seconds: int = Field(description="Durations of the answered ones")
    outgoing_calls: int = Field(description="Outbound (and on-net) calls from the extension")
    outgoing_answered: int
    outgoing_talk_seconds: int
    total: str = Field(description="What the calls were priced, 8 places")
    currency: str


class AgentRow(AgentCounts):
    extension: str | None = Field(description="null: calls attributed to no extension")
    account: str | None = Field(description="The extension's billing account when rated")


class AgentsReport(RangeRead):
    agents: list[AgentRow]
    totals: AgentCounts


@router.get(
    "/v1/reports/agents",
    response_model=AgentsReport,
    responses=CSV_RESPONSES,
    summary="Answered incoming and outgoing calls per representative (extension), seed 003",
)
async def agents_report(
    principal: PrincipalDep,
    state: StateDep,
    from_: str | None = _FROM,
    to: str | None = _TO,
    sort: Literal["incoming", "outgoing", "talk_time", "extension"] = Query(
        "incoming",
        description="Most answered incoming first, most answered outgoing, most talk time, "
        "or by extension",
    ),
    format: Format = _FORMAT,
) -> Any:
    span = _range(principal, from_, to)
    async with state.engine.connect() as conn:
        rows = await sql.agents(
            conn, database_id=principal.database_id, start=span.start, end=span.end, sort=sort
        )
    agents: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    for r in rows:
        counts = {k: r[k] for k in AGENT_COUNTS}
        money = {"total": fmt8(r["total"]), "currency": principal.currency}
        if r["is_total"]:  # the grand-total grouping set: always exactly one row
            totals = {**counts, **money}
        else:
            agents.append({"extension": r["extension"], "account": r["account"], **counts, **money})
    if format == "csv":
        return _csv("agents", principal, span, AGENT_COLUMNS, agents)
    return {**_range_body(span), "agents": agents, "totals": totals}


# --- GET /v1/reports/answer-ratio ----------------------------------------------------------


class RatioCounts(BaseModel):
    calls: int
    answered: int
    ratio: str | None = Field(description="answered / calls, 4 places, rounded half-up")


class RatioRow(RatioCounts):
    country: str | None = Field(None, description="by=country: ISO 3166 alpha-2; null: none")
    country_name: str | None = Field(None, description="by=country: in English")
    day: str | None = Field(None, description="by=day: the local date")
    extension: str | None = Field(None, description="by=extension; null: no extension")


class RatioReport(RangeRead):
    by: str
    direction: Direction | None
    rows: list[RatioRow]
    totals: RatioCounts


def _ratio_row(by: str, key: Any, calls: int, answered: int) -> dict[str, Any]:
    row: dict[str, Any] = {by: key.isoformat() if by == "day" and key is not None else key}
    if by == "country":
        row["country_name"] = country_name(key)
    return {**row, "calls": calls, "answered": answered, "ratio": ratio(answered, calls)}


@router.get(
    "/v1/reports/answer-ratio",
    response_model=RatioReport,
    responses=CSV_RESPONSES,
    response_model_exclude_unset=True,  # a row carries the key of its `by` only
    summary="Answered / total per destination country (or local day, or extension), seed 003",
)
async def answer_ratio_report(
    principal: PrincipalDep,
    state: StateDep,
    from_: str | None = _FROM,
    to: str | None = _TO,
    by: str = Query(
        "country",
        max_length=40,
        description="country (the other party's: callee of an outbound call, caller of an "
        "inbound one), day (local date) or extension",
    ),
    direction: Direction | None = _DIRECTION,
    format: Format = _FORMAT,
) -> Any:
    if by not in sql.RATIO_KEYS:
        raise Unprocessable(f"by: {by!r} is not one of {', '.join(sql.RATIO_KEYS)}")
    span = _range(principal, from_, to)
    groups: dict[Any, list[int]] = {}
    totals: dict[str, Any] = {"calls": 0, "answered": 0, "ratio": None}
    async with state.engine.connect() as conn:
        async for r in sql.answer_ratio(
            conn,
            database_id=principal.database_id,
            start=span.start,
            end=span.end,
            by=by,
            timezone=span.timezone,
            direction=direction,
        ):
            if r["is_total"]:
                totals = {k: r[k] for k in ("calls", "answered")}
                totals["ratio"] = ratio(r["answered"], r["calls"])
                continue
            # by=country: the keys are numbers, folded into their countries here (a row
            # per distinct number, already counted by PostgreSQL).
            key = country_of(r["key"]) if by == "country" else r["key"]
            counts = groups.setdefault(key, [0, 0])
            counts[0] += r["calls"]
            counts[1] += r["answered"]
    items = list(groups.items())
    if by == "country":  # most calls first; no country last
        items.sort(key=lambda kv: (kv[0] is None, -kv[1][0], kv[0] or ""))
    rows = [_ratio_row(by, key, calls, answered) for key, (calls, answered) in items]
    if format == "csv":
        columns = ("country", "country_name") if by == "country" else (by,)
        return _csv(
            f"answer-ratio-{by}", principal, span, (*columns, *RatioCounts.model_fields), rows
        )
    return {**_range_body(span), "by": by, "direction": direction, "rows": rows, "totals": totals}


# --- GET /v1/reports/peak-hours ------------------------------------------------------------

HOUR_COUNTS = ("calls", "answered", "inbound", "outbound", "talk_seconds", "peak_concurrent")


class HourRow(BaseModel):
    weekday: int | None = Field(None, description="With by_weekday: ISO weekday, 1 = Monday")
    hour: int = Field(description="Local hour of day, 0-23")
    calls: int = Field(description="Calls that started in this hour")
    answered: int
    inbound: int
    outbound: int
    talk_seconds: int = Field(description="Durations of the answered calls")
    peak_concurrent: int = Field(description="The most calls in progress at once in this hour")


class ConcurrentPeak(BaseModel):
    calls: int = Field(description="The most calls in progress at once in the range")
    at: str | None = Field(description="The first instant it was reached; null for none")


class PeakHoursReport(RangeRead):
    by_weekday: bool
    direction: Direction | None
    hours: list[HourRow] = Field(description="Every bucket, empty ones with zeros")
    busiest: HourRow | None = Field(description="The bucket with the most calls (the first)")
    peak_concurrent: ConcurrentPeak


@router.get(
    "/v1/reports/peak-hours",
    response_model=PeakHoursReport,
    responses=CSV_RESPONSES,
    summary="Calls per local hour of day (optionally per weekday) and concurrency, seed 003",
)
async def peak_hours_report(
    principal: PrincipalDep,
    state: StateDep,
    from_: str | None = _FROM,
    to: str | None = _TO,
    by_weekday: bool = Query(False, description="One bucket per weekday and hour (7 x 24)"),
    direction: Direction | None = _DIRECTION,
    format: Format = _FORMAT,
) -> Any:
    span = _range(principal, from_, to)
    args: dict[str, Any] = {
        "database_id": principal.database_id,
        "start": span.start,
        "end": span.end,
        "timezone": span.timezone,
        "direction": direction,
        "by_weekday": by_weekday,
    }
    async with state.engine.connect() as conn:
        counts = await sql.hour_counts(conn, **args)
        levels = await sql.concurrency(conn, **args)
    peaks = {(r["weekday"], r["hour"]): r["level"] for r in levels if r["peak_at"] is None}
    top = next((r for r in levels if r["peak_at"] is not None), None)
    hours = [
        {
            "weekday": r["weekday"] if by_weekday else None,
            "hour": r["hour"],
            **{k: r[k] for k in HOUR_COUNTS if k != "peak_concurrent"},
            "peak_concurrent": int(peaks.get((r["weekday"], r["hour"]), 0)),
        }
        for r in counts
    ]
    if format == "csv":
        columns = ("weekday", "hour", *HOUR_COUNTS) if by_weekday else ("hour", *HOUR_COUNTS)
        return _csv("peak-hours", principal, span, columns, hours)
    busiest = max(hours, key=lambda h: h["calls"])  # max keeps the first of equals
    level = int(top["level"]) if top is not None else 0
    return {
        **_range_body(span),
        "by_weekday": by_weekday,
        "direction": direction,
        "hours": hours,
        "busiest": busiest if busiest["calls"] else None,
        "peak_concurrent": {
            "calls": level,
            "at": span.local(top["peak_at"]) if top is not None and level else None,
        },
    }

"""`/v1/reports/...` in process, on a small data set written straight into `cdr`: each report's
exact numbers as JSON and CSV, local days and hours of a New York tenant, the range's edges,
bad parameters, and another tenant's calls never counted."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from cdrmodel.db import asyncpg_dsn
from tests.helpers import Tenant
from tests.inprocess.conftest import Pipeline

NY = ZoneInfo("America/New_York")  # EST, UTC-5, all through January
RANGE = {"from": "2026-01-05", "to": "2026-01-06"}  # Monday and Tuesday, whole local days


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


# name: (local start or None, caller, callee, duration, disposition, rated / unrated reason,
#        direction, extension, account, normalized number, call type, total)
CALLS: dict[str, tuple[Any, ...]] = {
    # Before the range by a second in New York (04:59:59 UTC on the 5th): not counted, but
    # its last 29 s are in progress when the range begins.
    "e1": ("2026-01-04 23:59:59", "100", "16138220000", 30, "ANSWERED", True, "outbound",
           "100", "100000_VoIP", "16138220000", "L", "0.015"),
    "r1": ("2026-01-05 09:00:00", "100", "16135550101", 60, "ANSWERED", True, "outbound",
           "100", "100000_VoIP", "16135550101", "L", "0.015"),
    "r2": ("2026-01-05 09:00:30", "100", "16135550102", 120, "ANSWERED", True, "outbound",
           "100", "100000_VoIP", "16135550102", "L", "0.03"),
    "r3": ("2026-01-05 09:30:00", "100", "12125550100", 0, "NO ANSWER", True, "outbound",
           "100", "100000_VoIP", "12125550100", "S", "0"),
    # 23:30 in New York is 04:30 UTC on Tuesday: Monday's, hour 23.
    "r4": ("2026-01-05 23:30:00", "101", "442079460000", 30, "ANSWERED", True, "outbound",
           "101", "101000_VoIP", "442079460000", "I", "0.12345678"),
    "r5": ("2026-01-06 10:00:00", "16135550199", "100", 200, "ANSWERED", True, "inbound",
           "100", "100000_VoIP", "16135550199", "IB", "0"),
    "r6": ("2026-01-06 10:05:00", "12125550199", "101", 0, "BUSY", True, "inbound",
           "101", "101000_VoIP", "12125550199", "IB", "0"),
    "r7": ("2026-01-06 10:02:00", "12125550198", "100", 100, "ANSWERED", True, "inbound",
           "100", "100000_VoIP", "12125550198", "IB", "0"),
    # On-net, from 100 to 101; it runs 15 s into hour 11.
    "r8": ("2026-01-06 10:59:30", "100", "101", 45, "ANSWERED", True, "outbound",
           "100", "100000_VoIP", "101", "2T", "0"),
    "u1": ("2026-01-06 12:00:00", "555", "16138220000", 50, "ANSWERED", "no_package",
           "outbound", None, None, "16138220000", None, None),
    "u2": ("2026-01-06 13:00:00", "100", "33142685300", 10, "ANSWERED", "no_rate", "outbound",
           "100", "100000_VoIP", "33142685300", "I", None),
    # No start time: listed by its arrival (14:00 on the 6th), in no other report.
    "u3": (None, "100", "16138220000", 30, "ANSWERED", "invalid_start_time", "outbound",
           "100", "100000_VoIP", "16138220000", None, None),
    # The range's end, excluded.
    "e2": ("2026-01-07 00:00:00", "555", "16138220000", 10, "ANSWERED", "no_package",
           "outbound", None, None, "16138220000", None, None),
}  # fmt: skip
# Another tenant's calls, in the same hours: a third call in progress at 09:00:30 if counted.
OTHER: dict[str, tuple[Any, ...]] = {
    "x1": ("2026-01-05 09:00:15", "100", "16135550101", 300, "ANSWERED", True, "outbound",
           "100", "100000_VoIP", "16135550101", "L", "5"),
    "x2": ("2026-01-06 12:30:00", "555", "16138220000", 20, "ANSWERED", "no_package",
           "outbound", None, None, "16138220000", None, None),
}  # fmt: skip


async def _insert(conn: asyncpg.Connection, tenant: Tenant, calls: dict[str, tuple]) -> None:
    old = datetime(2020, 1, 1, tzinfo=NY)  # rated long ago: no re-rating look takes them
    for name, (start, caller, callee, dur, disp, outcome, direction, ext, account, number,
               call_type, total) in calls.items():  # fmt: skip
        start_time = _local(start) if start else None
        received = (start_time or _local("2026-01-06 14:00:00")) + timedelta(seconds=dur + 1)
        await conn.execute(
            """
            INSERT INTO cdr (cdr_id, database_id, api_account, external_id,
              originating_number, destination_number, start_time, start_time_raw, duration,
              disposition, received_at, rated, unrated_reason, direction, extension, account,
              normalized_number, call_type, call_billing, total, currency, rated_at,
              updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
              $17, $18, $19, $20, 'USD', $21, $21)
            """,
            uuid.uuid4(),
            tenant.database_id,
            tenant.account,
            name,
            caller,
            callee,
            start_time,
            None if start else "yesterday-ish",
            dur,
            disp,
            received,
            outcome is True,
            None if outcome is True else outcome,
            direction,
            ext,
            account,
            number,
            call_type,
            None if total is None else ("free" if Decimal(total) == 0 else "billed"),
            None if total is None else Decimal(total),
            old,
        )


@pytest.fixture
async def ny(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.tenant(timezone="America/New_York")
    other = await pipeline.tenant(timezone="America/New_York")
    await pipeline.settled(tenant)
    await pipeline.settled(other)
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        await _insert(conn, tenant, CALLS)
        await _insert(conn, other, OTHER)
    finally:
        await conn.close()
    return tenant


async def _get(pipeline: Pipeline, tenant: Tenant, path: str, **params: object) -> Any:
    resp = await pipeline.notifier.get(
        f"/v1/reports/{path}", params=params, auth=(tenant.login, tenant.password)
    )
    assert resp.status_code == 200, resp.text
    if params.get("format") == "csv":
        assert resp.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(resp.text)))
    return resp.json()


# --- unrated -------------------------------------------------------------------------------


async def test_unrated_counts_reasons_and_pages_records(pipeline: Pipeline, ny: Tenant) -> None:
    first = await _get(pipeline, ny, "unrated", limit=2, **RANGE)
    assert first["from"] == "2026-01-05T00:00:00-05:00"
    assert first["to"] == "2026-01-07T00:00:00-05:00"
    assert first["timezone"] == "America/New_York"
    assert first["reasons"] == [
        {"reason": "invalid_start_time", "records": 1, "seconds": 30},
        {"reason": "no_package", "records": 1, "seconds": 50},
        {"reason": "no_rate", "records": 1, "seconds": 10},
    ]
    assert first["records_total"] == 3
    assert [r["external_id"] for r in first["records"]] == ["u1", "u2"]
    assert first["records"][0]["start_time"] == "2026-01-06T12:00:00-05:00"
    assert first["records"][0]["unrated_reason"] == "no_package"
    assert first["next_cursor"]
    second = await _get(pipeline, ny, "unrated", limit=2, cursor=first["next_cursor"], **RANGE)
    (u3,) = second["records"]
    assert second["next_cursor"] is None
    assert u3["external_id"] == "u3" and u3["start_time"] is None
    assert u3["start_time_raw"] == "yesterday-ish"
    assert u3["received_at"] == "2026-01-06T14:00:31-05:00"
    only = await _get(pipeline, ny, "unrated", reason="no_rate", **RANGE)
    assert [r["external_id"] for r in only["records"]] == ["u2"]
    # The day after holds e2 (at its local midnight) and nothing of the other tenant's.
    after = await _get(pipeline, ny, "unrated", **{"from": "2026-01-07", "to": "2026-01-07"})
    assert after["reasons"] == [{"reason": "no_package", "records": 1, "seconds": 10}]


async def test_unrated_as_csv(pipeline: Pipeline, ny: Tenant) -> None:
    rows = await _get(pipeline, ny, "unrated", format="csv", **RANGE)
    assert [(r["external_id"], r["unrated_reason"], r["rated"]) for r in rows] == [
        ("u1", "no_package", "false"),
        ("u2", "no_rate", "false"),
        ("u3", "invalid_start_time", "false"),
    ]
    assert rows[2]["received_at"] == "2026-01-06T14:00:31-05:00"
    reasons = await _get(pipeline, ny, "unrated", format="csv", part="reasons", **RANGE)
    assert reasons == [
        {"reason": "invalid_start_time", "records": "1", "seconds": "30"},
        {"reason": "no_package", "records": "1", "seconds": "50"},
        {"reason": "no_rate", "records": "1", "seconds": "10"},
    ]


# --- agents --------------------------------------------------------------------------------

AGENT_100 = {
    "extension": "100",
    "account": "100000_VoIP",
    "incoming_calls": 2,
    "incoming_answered": 2,
    "incoming_talk_seconds": 300,
    "outgoing_calls": 5,  # r1 r2 r3, on-net r8, unrated u2
    "outgoing_answered": 4,
    "outgoing_talk_seconds": 235,
    "total": "0.04500000",
    "currency": "USD",
}
AGENT_101 = {
    "extension": "101",
    "account": "101000_VoIP",
    "incoming_calls": 1,
    "incoming_answered": 0,
    "incoming_talk_seconds": 0,
    "outgoing_calls": 1,
    "outgoing_answered": 1,
    "outgoing_talk_seconds": 30,
    "total": "0.12345678",
    "currency": "USD",
}
NOBODY = {  # u1: the caller 555 is no extension
    "extension": None,
    "account": None,
    "incoming_calls": 0,
    "incoming_answered": 0,
    "incoming_talk_seconds": 0,
    "outgoing_calls": 1,
    "outgoing_answered": 1,
    "outgoing_talk_seconds": 50,
    "total": "0.00000000",
    "currency": "USD",
}


async def test_agents_count_answered_calls_and_talk_time(pipeline: Pipeline, ny: Tenant) -> None:
    report = await _get(pipeline, ny, "agents", **RANGE)
    assert report["agents"] == [AGENT_100, AGENT_101, NOBODY]
    assert report["totals"] == {
        "incoming_calls": 3,
        "incoming_answered": 2,
        "incoming_talk_seconds": 300,
        "outgoing_calls": 7,
        "outgoing_answered": 6,
        "outgoing_talk_seconds": 315,
        "total": "0.16845678",
        "currency": "USD",
    }
    by_talk = await _get(pipeline, ny, "agents", sort="talk_time", **RANGE)
    assert [a["extension"] for a in by_talk["agents"]] == ["100", None, "101"]
    # Monday alone: r1-r4; r4 at 23:30 local is Monday's although it is Tuesday in UTC.
    monday = await _get(pipeline, ny, "agents", **{"from": "2026-01-05", "to": "2026-01-05"})
    assert [(a["extension"], a["outgoing_calls"]) for a in monday["agents"]] == [
        ("100", 3),
        ("101", 1),
    ]


async def test_agents_as_csv(pipeline: Pipeline, ny: Tenant) -> None:
    rows = await _get(pipeline, ny, "agents", format="csv", **RANGE)
    as_text = [
        {k: "" if v is None else str(v) for k, v in a.items()}
        for a in (AGENT_100, AGENT_101, NOBODY)
    ]
    assert rows == as_text


# --- answer ratio --------------------------------------------------------------------------


def _ratio(key: str, value: Any, calls: int, answered: int, ratio: str, **more: Any) -> dict:
    return {key: value, **more, "calls": calls, "answered": answered, "ratio": ratio}


async def test_answer_ratio_by_country(pipeline: Pipeline, ny: Tenant) -> None:
    report = await _get(pipeline, ny, "answer-ratio", by="country", **RANGE)
    assert report["by"] == "country" and report["direction"] is None
    assert report["rows"] == [
        _ratio("country", "CA", 4, 4, "1.0000", country_name="Canada"),  # r1 r2, r5 from CA, u1
        _ratio("country", "US", 3, 1, "0.3333", country_name="United States"),
        _ratio("country", "FR", 1, 1, "1.0000", country_name="France"),
        _ratio("country", "GB", 1, 1, "1.0000", country_name="United Kingdom"),
        _ratio("country", None, 1, 1, "1.0000", country_name=None),  # on-net r8
    ]
    assert report["totals"] == {"calls": 10, "answered": 8, "ratio": "0.8000"}
    # An inbound call counts under the caller's country.
    inbound = await _get(pipeline, ny, "answer-ratio", direction="inbound", **RANGE)
    assert inbound["rows"] == [
        _ratio("country", "US", 2, 1, "0.5000", country_name="United States"),
        _ratio("country", "CA", 1, 1, "1.0000", country_name="Canada"),
    ]
    assert inbound["totals"] == {"calls": 3, "answered": 2, "ratio": "0.6667"}


async def test_answer_ratio_by_local_day_and_by_extension(pipeline: Pipeline, ny: Tenant) -> None:
    days = await _get(pipeline, ny, "answer-ratio", by="day", **RANGE)
    assert days["rows"] == [
        _ratio("day", "2026-01-05", 4, 3, "0.7500"),  # r4 (04:30 UTC on the 6th) included
        _ratio("day", "2026-01-06", 6, 5, "0.8333"),
    ]
    extensions = await _get(pipeline, ny, "answer-ratio", by="extension", **RANGE)
    assert extensions["rows"] == [
        _ratio("extension", "100", 7, 6, "0.8571"),
        _ratio("extension", "101", 2, 1, "0.5000"),
        _ratio("extension", None, 1, 1, "1.0000"),
    ]


async def test_answer_ratio_as_csv(pipeline: Pipeline, ny: Tenant) -> None:
    rows = await _get(pipeline, ny, "answer-ratio", by="country", format="csv", **RANGE)
    assert [list(r.values()) for r in rows] == [
        ["CA", "Canada", "4", "4", "1.0000"],
        ["US", "United States", "3", "1", "0.3333"],
        ["FR", "France", "1", "1", "1.0000"],
        ["GB", "United Kingdom", "1", "1", "1.0000"],
        ["", "", "1", "1", "1.0000"],
    ]
    assert list(rows[0]) == ["country", "country_name", "calls", "answered", "ratio"]
    days = await _get(pipeline, ny, "answer-ratio", by="day", format="csv", **RANGE)
    assert days == [
        {"day": "2026-01-05", "calls": "4", "answered": "3", "ratio": "0.7500"},
        {"day": "2026-01-06", "calls": "6", "answered": "5", "ratio": "0.8333"},
    ]


# --- peak hours ----------------------------------------------------------------------------


def _hour(hour: int, calls: int = 0, answered: int = 0, inbound: int = 0, outbound: int = 0,
          talk: int = 0, peak: int = 0) -> dict[str, Any]:  # fmt: skip
    return {
        "weekday": None,
        "hour": hour,
        "calls": calls,
        "answered": answered,
        "inbound": inbound,
        "outbound": outbound,
        "talk_seconds": talk,
        "peak_concurrent": peak,
    }


EXPECTED_HOURS = {
    0: _hour(0, peak=1),  # e1, begun a second before the range, is carried in
    9: _hour(9, 3, 2, 0, 3, 180, peak=2),  # r1 and r2 overlap 09:00:30-09:01:00
    10: _hour(10, 4, 3, 3, 1, 345, peak=2),  # r5 and r7 overlap; r8 starts 10:59:30
    11: _hour(11, peak=1),  # r8 carried into hour 11
    12: _hour(12, 1, 1, 0, 1, 50, peak=1),
    13: _hour(13, 1, 1, 0, 1, 10, peak=1),
    23: _hour(23, 1, 1, 0, 1, 30, peak=1),  # r4, 23:30 local
}


async def test_peak_hours_per_local_hour_with_concurrency(pipeline: Pipeline, ny: Tenant) -> None:
    report = await _get(pipeline, ny, "peak-hours", **RANGE)
    assert report["hours"] == [EXPECTED_HOURS.get(h, _hour(h)) for h in range(24)]
    assert report["busiest"] == EXPECTED_HOURS[10]
    assert report["peak_concurrent"] == {"calls": 2, "at": "2026-01-05T09:00:30-05:00"}
    inbound = await _get(pipeline, ny, "peak-hours", direction="inbound", **RANGE)
    assert inbound["hours"][10] == _hour(10, 3, 2, 3, 0, 300, peak=2)
    assert sum(h["calls"] for h in inbound["hours"]) == 3
    assert inbound["peak_concurrent"] == {"calls": 2, "at": "2026-01-06T10:02:00-05:00"}


async def test_peak_hours_per_weekday(pipeline: Pipeline, ny: Tenant) -> None:
    report = await _get(pipeline, ny, "peak-hours", by_weekday="true", **RANGE)
    assert len(report["hours"]) == 7 * 24
    busy = {(h["weekday"], h["hour"]): (h["calls"], h["peak_concurrent"]) for h in report["hours"]}
    assert {k: v for k, v in busy.items() if v != (0, 0)} == {
        (1, 0): (0, 1),  # Monday 5 January
        (1, 9): (3, 2),
        (1, 23): (1, 1),
        (2, 10): (4, 2),  # Tuesday
        (2, 11): (0, 1),
        (2, 12): (1, 1),
        (2, 13): (1, 1),
    }
    assert report["busiest"]["weekday"] == 2 and report["busiest"]["hour"] == 10


async def test_peak_hours_as_csv(pipeline: Pipeline, ny: Tenant) -> None:
    rows = await _get(pipeline, ny, "peak-hours", format="csv", **RANGE)
    assert len(rows) == 24
    assert rows[9] == {
        "hour": "9",
        "calls": "3",
        "answered": "2",
        "inbound": "0",
        "outbound": "3",
        "talk_seconds": "180",
        "peak_concurrent": "2",
    }
    assert rows[11]["calls"] == "0" and rows[11]["peak_concurrent"] == "1"


async def test_datetime_bounds_are_local_and_to_is_excluded(pipeline: Pipeline, ny: Tenant) -> None:
    # 09:00:00-09:00:30 local: r1 only; r2 starts at the excluded end.
    span = {"from": "2026-01-05T09:00:00", "to": "2026-01-05T09:00:30"}
    report = await _get(pipeline, ny, "peak-hours", **span)
    assert report["hours"][9]["calls"] == 1
    assert report["peak_concurrent"] == {"calls": 1, "at": "2026-01-05T09:00:00-05:00"}
    # The same instant with an offset.
    utc = {"from": "2026-01-05T14:00:00Z", "to": "2026-01-05T14:00:30+00:00"}
    assert (await _get(pipeline, ny, "peak-hours", **utc))["hours"][9]["calls"] == 1
    assert (await _get(pipeline, ny, "answer-ratio", **span))["totals"]["calls"] == 1


async def test_other_tenants_and_empty_ranges(pipeline: Pipeline, ny: Tenant) -> None:
    """A tenant sees none of `ny`'s calls (nor `ny` the other's: the numbers above exclude
    them), and a range without calls answers zeros, not errors."""
    stranger = await pipeline.tenant()
    for path in ("unrated", "agents", "answer-ratio", "peak-hours"):
        report = await _get(pipeline, stranger, path, **RANGE)
        assert report["from"] == "2026-01-05T00:00:00+00:00"
        assert report.get("records", []) == [] and report.get("agents", []) == []
        assert report.get("rows", []) == []
    empty = await _get(pipeline, stranger, "peak-hours", **RANGE)
    assert empty["peak_concurrent"] == {"calls": 0, "at": None} and empty["busiest"] is None
    assert (await _get(pipeline, stranger, "agents", **RANGE))["totals"]["total"] == "0.00000000"


async def test_default_range_is_the_last_30_days(pipeline: Pipeline, tenant: Tenant) -> None:
    report = await _get(pipeline, tenant, "answer-ratio")
    start, end = datetime.fromisoformat(report["from"]), datetime.fromisoformat(report["to"])
    assert end - start == timedelta(days=30)
    assert end.time().isoformat() == "00:00:00" and end > datetime.now(end.tzinfo)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("agents", {"from": "last tuesday"}, "from: 'last tuesday' is neither a date"),
        ("agents", {"to": "2026-13-01"}, "to: '2026-13-01' is neither a date"),
        ("agents", {"from": "1900-01-01"}, "from: 1900-01-01 is outside 1970-2100"),
        ("agents", {"to": "2200-01-01T00:00:00"}, "to: 2200-01-01T00:00:00 is outside"),
        ("peak-hours", {"from": "2026-01-06", "to": "2026-01-05"}, "to: 2026-01-06T00:00:00"),
        ("peak-hours", {"from": "2025-01-01", "to": "2026-01-02"}, "longer than 366 days"),
        ("answer-ratio", {"by": "carrier"}, "by: 'carrier' is not one of country, day, exten"),
        ("answer-ratio", {"direction": "sideways"}, "direction:"),
        ("answer-ratio", {"format": "xml"}, "format:"),
        ("agents", {"sort": "loudest"}, "sort:"),
        ("peak-hours", {"by_weekday": "maybe"}, "by_weekday:"),
        ("unrated", {"limit": "0"}, "limit:"),
        ("unrated", {"limit": "1001"}, "limit:"),
        ("unrated", {"cursor": "not-a-cursor"}, "cursor: 'not-a-cursor' is not a next_cursor"),
        ("unrated", {"part": "everything", "format": "csv"}, "part:"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    pipeline: Pipeline, tenant: Tenant, path: str, params: dict, message: str
) -> None:
    resp = await pipeline.notifier.get(
        f"/v1/reports/{path}", params=params, auth=(tenant.login, tenant.password)
    )
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["message"]


async def test_reports_need_an_api_account(pipeline: Pipeline, tenant: Tenant) -> None:
    resp = await pipeline.notifier.get("/v1/reports/agents")
    assert resp.status_code == 401
    wrong = await pipeline.notifier.get("/v1/reports/agents", auth=(tenant.login, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["code"] == 50390

"""CDR rows written straight into `cdr` (no pipeline), for the query tests: one builder
with sensible defaults, and a set of rows that takes every branch of a record's rendering."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from cdrmodel.db import asyncpg_dsn
from tests.helpers import Tenant
from tests.inprocess.conftest import Pipeline

NY = "America/New_York"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
_COLUMNS = (
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
    "received_at",
    "rated",
    "unrated_reason",
    "direction",
    "extension",
    "package_id",
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
    "recording_url",
    "revision",
)


def cdr_row(tenant: Tenant, ref: str, **fields: Any) -> dict[str, Any]:
    """A rated 60-second outbound call to Ottawa at T0, unless `fields` say otherwise."""
    row: dict[str, Any] = {
        "cdr_id": uuid.uuid4(),
        "database_id": tenant.database_id,
        "api_account": tenant.account,
        "external_id": ref,
        "originating_number": "100",
        "destination_number": "16135550100",
        "start_time": T0,
        "start_time_raw": None,
        "duration": 60,
        "disposition": "ANSWERED",
        "ring_seconds": None,
        "account_code": None,
        "extra": {},
        "received_at": T0,
        "rated": True,
        "unrated_reason": None,
        "direction": "outbound",
        "extension": "100",
        "package_id": tenant.package,
        "account": "100000_VoIP",
        "call_type": "S",
        "call_billing": "billed",
        "destination_name": "Canada - 613 Ottawa",
        "matched_prefix": "1613",
        "billed_seconds": 60,
        "rate": Decimal("0.015"),
        "total": Decimal("0.015"),
        "cost": Decimal("0.0052"),
        "currency": "USD",
        "recording_url": None,
        "revision": 1,
    }
    row.update(fields)
    return row


async def insert(pipeline: Pipeline, rows: Iterable[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        placeholders = ", ".join(f"${n}" for n in range(1, len(_COLUMNS) + 1))
        await conn.executemany(
            f"INSERT INTO cdr ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
            [tuple(row[c] for c in _COLUMNS) for row in rows],
        )
    finally:
        await conn.close()


def varied_rows(tenant: Tenant) -> list[dict[str, Any]]:
    """Rows that take every branch of render_record: each disposition, the PBX's own
    `type`/`status`/`did` (truthy and falsy) and fields ours override, microseconds, a
    winter time, odd currencies, no cost, no external id, an untimed row."""
    t = tenant
    return [
        cdr_row(t, f"d{n}", disposition=d, start_time=T0 + timedelta(seconds=n))
        for n, d in enumerate(["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"])
    ] + [
        cdr_row(
            t,
            "extras",
            start_time=T0 + timedelta(minutes=1, microseconds=250),
            ring_seconds=7,
            account_code="ac,1",
            extra={
                "type": "Queue Call",
                "status": "",
                "did": 0,
                "queue": {"n": [1, 2]},
                "note": 'he said "hi",\nthen left',
                "caller": "overridden",
                "ü": "ö",
            },
            destination_name='Quoted "name", with comma',
        ),
        cdr_row(
            t,
            "inbound",
            start_time=T0 + timedelta(minutes=2),
            direction="inbound",
            originating_number="16135550199",
            destination_number="100",
            call_type="IB",
            extra={"did": "16135550000", "status": "RINGNOANSWER"},
        ),
        cdr_row(
            t,
            "yen",
            start_time=T0 + timedelta(minutes=3),
            currency="JPY",
            total=Decimal("12.5"),
            rate=Decimal("1.123456789"),
            cost=None,
        ),
        cdr_row(
            t,
            "kwd",
            start_time=T0 + timedelta(minutes=4),
            currency="KWD",
            total=Decimal("0.0125"),
            external_id=None,
        ),
        cdr_row(t, "winter", start_time=datetime(2026, 1, 5, 3, 0, tzinfo=UTC)),
        cdr_row(
            t,
            "untimed",
            start_time=None,
            start_time_raw="2026-13-01",
            rated=False,
            unrated_reason="invalid_start_time",
            total=None,
            rate=None,
            cost=None,
            billed_seconds=0,
            extra={"start_time_raw": "theirs"},
        ),
        cdr_row(
            t,
            "recorded",
            start_time=T0 + timedelta(minutes=5),
            recording_url="https://rec.example/calls/a.wav?sig=1",
            revision=3,
            extra={"record": "https://rec.example/replaced.wav"},
        ),
        cdr_row(
            t,
            "old-recording",
            start_time=T0 + timedelta(minutes=6),
            extra={"record": "https://rec.example/old.wav", "did": 5, "type": 7, "n": 1.5},
        ),
        cdr_row(
            t,
            "inbound-falsy",
            start_time=T0 + timedelta(minutes=7),
            direction="inbound",
            destination_number="200",
            extra={"did": 0, "status": False, "type": []},
        ),
    ]

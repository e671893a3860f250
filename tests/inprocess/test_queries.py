"""`GET /v1/cdrs` in process: each filter, times in the tenant's zone, cursor paging, the CSV
export, bad parameters, tenants kept apart, and the ways an API account can (and cannot)
sign in. Most tests insert `cdr` rows directly (the pipeline's own path is the first two)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from cdr_notifier.csvout import RECORD_COLUMNS, record_header
from cdr_notifier.search_repository import CdrSearch, Position, page_sql
from cdrmodel.db import asyncpg_dsn
from tests.helpers import Tenant, wait_for
from tests.inprocess.conftest import Pipeline
from tests.inprocess.stored_rows import NY, T0, cdr_row, insert, varied_rows
from tests.plans import index_partitions, plan_nodes, reads_cdr

SENT = {
    # external id: submitted fields (the tenant is in America/New_York)
    "a": {"StartDateTime": "2026-03-01 10:00:00"},
    "b": {"StartDateTime": "2026-03-02 10:00:00", "Duration": "0"},
    "c": {"StartDateTime": "2026-03-03 10:00:00", "OriginatingNumber": "555"},
    "d": {"StartDateTime": "2026-03-04 10:00:00", "DestinationNumber": "12125550100"},
}


@pytest.fixture
async def ny_tenant(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.tenant(timezone="America/New_York")
    for external_id, fields in SENT.items():
        assert await pipeline.submit(tenant, ExternalID=external_id, **fields) == "0"
    await pipeline.wait_stored(tenant, len(SENT))
    return tenant


async def _ids(pipeline: Pipeline, tenant: Tenant, **params: object) -> list[str]:
    return [r["external_id"] for r in await pipeline.stored(tenant, **params)]


async def test_each_filter_selects_its_records(pipeline: Pipeline, ny_tenant: Tenant) -> None:
    t = ny_tenant
    assert await _ids(pipeline, t) == ["a", "b", "c", "d"]  # feed order
    # Times without an offset are New York times: 2026-03-02 00:00 is 05:00 UTC.
    assert await _ids(pipeline, t, **{"from": "2026-03-02T00:00:00", "to": "2026-03-04T00:00:00"})
    assert await _ids(
        pipeline, t, **{"from": "2026-03-02T00:00:00", "to": "2026-03-04T00:00:00"}
    ) == ["b", "c"]
    assert await _ids(pipeline, t, **{"from": "2026-03-04T14:59:00Z"}) == ["d"]
    assert await _ids(pipeline, t, **{"from": "2026-03-04T15:00:01Z"}) == []
    assert await _ids(pipeline, t, rated="false") == ["c"]
    assert await _ids(pipeline, t, rated="true") == ["a", "b", "d"]
    assert await _ids(pipeline, t, call_type="I") == ["a", "b"]
    assert await _ids(pipeline, t, disposition="NO ANSWER") == ["b"]
    assert await _ids(pipeline, t, caller="55") == ["c"]
    assert await _ids(pipeline, t, destination="1212") == ["d"]
    (a,) = await pipeline.stored(t, caller="100", destination="1613", disposition="ANSWERED")
    assert a["start_time"] == "2026-03-01T10:00:00-05:00"  # shown in the tenant's zone
    assert a["time"] == 1772377200


async def test_cursor_pages_through_everything_once(pipeline: Pipeline, ny_tenant: Tenant) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, object] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        resp = await pipeline.notifier.get(
            "/v1/cdrs", params=params, auth=(ny_tenant.login, ny_tenant.password)
        )
        page = resp.json()
        seen += [r["external_id"] for r in page["cdrs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "1900-01-01T00:00:00Z"}, "from: time 1900-01-01T00:00:00+00:00 is outside"),
        ({"to": "2200-01-01T00:00:00"}, "to: time 2200-01-01T00:00:00 is outside"),
        ({"from": "yesterday"}, "from:"),
        ({"to": "2026-02-30T00:00:00"}, "to:"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to: must not be"),
        ({"billing_period": "2026-13"}, "billing_period: must be a month as YYYY-MM"),
        ({"billing_period": "2026-3"}, "billing_period: must be a month as YYYY-MM"),
        ({"billing_period": "march"}, "billing_period: must be a month as YYYY-MM"),
        ({"billing_period": "1969-12"}, "billing_period: the year must be within"),
        ({"billing_period": "2026-03-01"}, "billing_period:"),
        ({"min_seconds": "61", "max_seconds": "60"}, "min_seconds: must not be greater"),
        ({"min_seconds": "-1"}, "min_seconds:"),
        ({"max_seconds": "ten"}, "max_seconds:"),
        ({"disposition": "MAYBE"}, "disposition.0: Value error, must be one of ANSWERED"),
        ({"rated": "perhaps"}, "rated:"),
        ({"format": "xml"}, "format:"),
        ({"limit": "0"}, "limit:"),
        ({"limit": "1001"}, "limit:"),
        ({"cursor": "-1"}, "cursor: not a cursor"),
        ({"cursor": "garbage!"}, "cursor: not a cursor"),
        ({"cursor": "MTIzLm5vdGF1dWlk"}, "cursor: not a cursor"),  # "123.notauuid"
        ({"cursor": "x" * 201}, "cursor:"),
        ({"caller": "1\x00"}, "caller:"),
    ],
)
async def test_bad_query_parameters_are_422_naming_the_parameter(
    pipeline: Pipeline, ny_empty: Tenant, params: dict, message: str
) -> None:
    for fmt in ("json", "csv"):
        resp = await pipeline.notifier.get(
            "/v1/cdrs", params={"format": fmt, **params}, auth=(ny_empty.login, ny_empty.password)
        )
        assert resp.status_code == 422, resp.text
        assert message in resp.json()["message"]


async def test_login_parameters_sign_in_like_basic_auth(pipeline: Pipeline, tenant: Tenant) -> None:
    by_params = await pipeline.notifier.get(
        "/v1/cdrs", params={"login": tenant.login, "password": tenant.password}
    )
    assert by_params.status_code == 200 and by_params.json() == {"cdrs": [], "next_cursor": None}
    garbled = await pipeline.notifier.get("/v1/cdrs", headers={"authorization": "Basic %%%"})
    assert garbled.status_code == 401 and garbled.json()["code"] == 50443
    no_account = await pipeline.notifier.get(
        "/v1/cdrs", params={"login": tenant.database_id, "password": tenant.password}
    )
    assert no_account.status_code == 401 and no_account.json()["code"] == 50440
    no_password = await pipeline.notifier.get("/v1/cdrs", params={"login": tenant.login})
    assert no_password.status_code == 401 and no_password.json()["code"] == 50300


# Rows inserted directly: every filter, edge and rendering case without the pipeline's wait.


async def search(pipeline: Pipeline, tenant: Tenant, **params: object) -> list[dict[str, Any]]:
    """Every record of the search, following the cursor page by page."""
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await pipeline.notifier.get(
            "/v1/cdrs", params=query, auth=(tenant.login, tenant.password)
        )
        assert resp.status_code == 200, resp.text
        page = resp.json()
        records += page["cdrs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


async def export(pipeline: Pipeline, tenant: Tenant, **params: object) -> list[dict[str, str]]:
    resp = await pipeline.notifier.get(
        "/v1/cdrs", params={**params, "format": "csv"}, auth=(tenant.login, tenant.password)
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(resp.text))
    assert reader.fieldnames == record_header()
    return list(reader)


async def quiet_tenant(pipeline: Pipeline, timezone: str = NY) -> Tenant:
    """A new tenant once the rater's re-rating pass over it is done (it would otherwise
    rate the unrated rows a test inserts under it)."""
    return await pipeline.settled_tenant(timezone=timezone)


@pytest.fixture
async def ny_empty(pipeline: Pipeline) -> Tenant:
    return await quiet_tenant(pipeline)


@pytest.fixture
async def filtered(pipeline: Pipeline) -> Tenant:
    """One row per case, each differing from `base` in what one filter looks at."""
    t = await quiet_tenant(pipeline)
    await insert(
        pipeline,
        [
            cdr_row(t, "base"),
            cdr_row(t, "early", start_time=T0 - timedelta(days=1)),
            cdr_row(t, "late", start_time=T0 + timedelta(days=1)),
            cdr_row(t, "short", duration=5),
            cdr_row(t, "long", duration=3600),
            cdr_row(t, "other_pkg", package_id="pkg2"),
            cdr_row(
                t,
                "unrated",
                rated=False,
                unrated_reason="no_package",
                package_id=None,
                call_type=None,
                total=None,
                rate=None,
                cost=None,
            ),
            cdr_row(t, "busy", disposition="BUSY", billed_seconds=0, total=Decimal(0)),
            cdr_row(t, "intl", call_type="I", destination_number="442071234567"),
            cdr_row(t, "caller2", originating_number="200"),
            cdr_row(t, "untimed", start_time=None, start_time_raw="31/02/2026", rated=False),
        ],
    )
    return t


FILTER_CASES = [
    # (parameters, the external ids that match; every other row of `filtered` must not)
    (
        {},
        [
            "early",
            "base",
            "short",
            "long",
            "other_pkg",
            "unrated",
            "busy",
            "intl",
            "caller2",
            "late",
            "untimed",
        ],
    ),
    # 12:00 UTC is 08:00 in New York (EDT from 2026-03-08)
    (
        {"from": "2026-03-10T08:00:00"},
        ["base", "short", "long", "other_pkg", "unrated", "busy", "intl", "caller2", "late"],
    ),
    ({"from": "2026-03-10T08:00:01"}, ["late"]),
    ({"from": "2026-03-10T12:00:01Z"}, ["late"]),
    ({"to": "2026-03-10T08:00:00"}, ["early"]),
    ({"to": "2026-03-10T12:00:00+00:00"}, ["early"]),
    (
        {"from": "2026-03-10T00:00:00", "to": "2026-03-11T00:00:00"},
        ["base", "short", "long", "other_pkg", "unrated", "busy", "intl", "caller2"],
    ),
    ({"billing_group": "pkg2"}, ["other_pkg"]),
    ({"billing_group": ["pkg2", "nosuch"]}, ["other_pkg"]),
    ({"min_seconds": "3600"}, ["long"]),
    ({"max_seconds": "5"}, ["short"]),
    ({"min_seconds": "5", "max_seconds": "5"}, ["short"]),
    (
        {"min_seconds": "6", "max_seconds": "3599"},
        ["early", "base", "other_pkg", "unrated", "busy", "intl", "caller2", "late", "untimed"],
    ),
    ({"caller": "2"}, ["caller2"]),
    ({"caller": "20"}, ["caller2"]),
    ({"caller": "00"}, []),  # a prefix, not a substring
    ({"destination": "44"}, ["intl"]),
    ({"destination": "4420712345670"}, []),
    ({"call_type": "I"}, ["intl"]),
    ({"call_type": ["I", "X"]}, ["intl"]),
    ({"disposition": "BUSY"}, ["busy"]),
    ({"disposition": "busy"}, ["busy"]),
    ({"disposition": ["BUSY", "NO ANSWER"]}, ["busy"]),
    ({"rated": "false"}, ["unrated", "untimed"]),
    ({"rated": "true", "max_seconds": "59"}, ["short"]),
    ({"rated": "false", "from": "2026-01-01T00:00:00Z"}, ["unrated"]),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES, ids=str)
async def test_each_filter_on_its_own(
    pipeline: Pipeline, filtered: Tenant, params: dict, expected: list[str]
) -> None:
    found = [r["external_id"] for r in await search(pipeline, filtered, **params)]
    # Same start time: cdr_id order, which a uuid4 does not tie to the insert order.
    assert sorted(found) == sorted(expected)
    exported = [r["external_id"] for r in await export(pipeline, filtered, **params)]
    assert exported == found  # the export has the same rows in the same order


async def test_rows_come_by_start_time_then_cdr_id(pipeline: Pipeline, filtered: Tenant) -> None:
    records = await search(pipeline, filtered)
    timed = [r for r in records if r["time"] is not None]
    keys = [(r["time"], uuid.UUID(r["cdr_id"])) for r in timed]
    assert keys == sorted(keys)
    assert [r["external_id"] for r in records[-1:]] == ["untimed"]  # without a start: last


async def test_billing_period_is_the_month_in_the_tenant_zone(
    pipeline: Pipeline, ny_empty: Tenant
) -> None:
    t = ny_empty
    edges = {
        # New York is UTC-5 on 1 March 2026, UTC-4 (EDT) on 1 April.
        "feb_last": datetime(2026, 3, 1, 4, 59, 59, 999999, tzinfo=UTC),
        "mar_first": datetime(2026, 3, 1, 5, 0, tzinfo=UTC),
        "mar_last": datetime(2026, 4, 1, 3, 59, 59, tzinfo=UTC),
        "apr_first": datetime(2026, 4, 1, 4, 0, tzinfo=UTC),
        "dec_last": datetime(2027, 1, 1, 4, 59, 59, tzinfo=UTC),
        "jan_first": datetime(2027, 1, 1, 5, 0, tzinfo=UTC),
    }
    await insert(pipeline, [cdr_row(t, name, start_time=at) for name, at in edges.items()])

    async def period(**params: object) -> list[str]:
        return [r["external_id"] for r in await search(pipeline, t, **params)]

    assert await period(billing_period="2026-02") == ["feb_last"]
    assert await period(billing_period="2026-03") == ["mar_first", "mar_last"]
    assert await period(billing_period="2026-04") == ["apr_first"]
    assert await period(billing_period="2026-12") == ["dec_last"]  # into next year's January
    assert await period(billing_period="2027-01") == ["jan_first"]
    assert await period(billing_period="2026-05") == []
    # With from / to, the overlap of the two.
    assert await period(billing_period="2026-03", **{"from": "2026-03-15T00:00:00"}) == ["mar_last"]
    assert await period(billing_period="2026-03", to="2026-03-01T00:00:01") == ["mar_first"]
    assert await period(billing_period="2026-03", **{"from": "2026-04-02T00:00:00"}) == []
    (shown,) = await search(pipeline, t, billing_period="2026-02")
    assert shown["start_time"] == "2026-02-28T23:59:59.999999-05:00"


async def test_like_wildcards_in_text_filters_match_only_themselves(
    pipeline: Pipeline, ny_empty: Tenant
) -> None:
    t = ny_empty
    callers = {"pct": "5%5", "plain": "555", "letter": "5a5", "under": "5_5", "slash": "5\\5"}
    await insert(
        pipeline,
        [
            cdr_row(t, name, originating_number=n, destination_number=n)
            for name, n in callers.items()
        ],
    )

    async def matching(**params: object) -> list[str]:
        return sorted(r["external_id"] for r in await search(pipeline, t, **params))

    for field in ("caller", "destination"):
        assert await matching(**{field: "5%"}) == ["pct"]
        assert await matching(**{field: "5_"}) == ["under"]
        assert await matching(**{field: "5\\"}) == ["slash"]
        assert await matching(**{field: "%"}) == []
        assert await matching(**{field: "5"}) == sorted(callers)
        assert await matching(**{field: "5%5"}) == ["pct"]


async def test_paging_sees_every_row_once_in_order(pipeline: Pipeline, ny_empty: Tenant) -> None:
    t = ny_empty
    rows = [
        # Ten rows share each start time, so the cdr id decides within a minute.
        cdr_row(t, f"r{n}", start_time=T0 + timedelta(minutes=n // 10), rated=n % 3 != 0)
        for n in range(230)
    ] + [cdr_row(t, f"u{n}", start_time=None, rated=False) for n in range(15)]
    await insert(pipeline, rows)
    expected = [
        r["external_id"]
        for r in sorted(
            rows, key=lambda r: (r["start_time"] is None, r["start_time"] or T0, r["cdr_id"])
        )
    ]
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        resp = await pipeline.notifier.get("/v1/cdrs", params=params, auth=(t.login, t.password))
        page = resp.json()
        pages += 1
        seen += [r["external_id"] for r in page["cdrs"]]
        if pages == 1:
            # Stored while the client pages: a row behind its cursor stays unseen, one ahead
            # is seen, and nothing already read comes again.
            await insert(
                pipeline,
                [
                    cdr_row(t, "behind", start_time=T0 - timedelta(days=1)),
                    cdr_row(t, "ahead", start_time=T0 + timedelta(days=1)),
                ],
            )
            first_untimed = next(n for n, e in enumerate(expected) if e.startswith("u"))
            expected.insert(first_untimed, "ahead")
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["cdrs"]) == 50
    assert seen == expected
    assert len(set(seen)) == len(seen) and pages == 5  # 246 rows: 4 full pages and 46
    # A filter pages the same way, through the timed rows and then the untimed ones.
    unrated = [r["external_id"] for r in await search(pipeline, t, rated="false", limit=7)]
    assert unrated == [
        e for e in expected if e.startswith("u") or (e.startswith("r") and int(e[1:]) % 3 == 0)
    ]


async def test_page_queries_are_one_range_scan_of_the_start_time_index(
    pipeline: Pipeline, ny_empty: Tenant
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        # Whatever the planner would pick on a table this small, the statement must be one a
        # range of the index answers in its own order: no sort, no filter on the keyset.
        await conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        await conn.execute("SET enable_sort = off")
        indexes = await index_partitions(conn)

        async def scans(sql: str, params: list[Any]) -> list[dict[str, Any]]:
            """The plan's scans of cdr: one of each partition (a Merge Append keeps their
            order), every one on a partition of the start-time index, none sorted after."""
            ((explained,),) = await conn.fetch("EXPLAIN (FORMAT JSON) " + sql, *params)
            nodes = list(plan_nodes(json.loads(explained)[0]["Plan"]))
            assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes
            found = [n for n in nodes if reads_cdr(n)]
            assert found, nodes
            for n in found:
                assert n["Node Type"] == "Index Scan", n
                assert indexes[n["Index Name"]][0] == "ix_cdr_database_id_start_time_cdr_id", n
            return found

        search_ = CdrSearch(database_id=ny_empty.database_id, rated=True, caller="1")
        for after in (None, Position(T0, uuid.uuid4())):
            sql, params = page_sql(search_, timed=True, after=after, limit=101)
            for scan in await scans(sql, params):
                index_cond = scan["Index Cond"]
                assert "database_id" in index_cond and "start_time" in index_cond, scan
                if after is not None:
                    assert "ROW(start_time, cdr_id) >" in index_cond, scan
        sql, params = page_sql(search_, timed=False, after=Position(None, uuid.uuid4()), limit=101)
        for scan in await scans(sql, params):
            index_cond = scan["Index Cond"]
            assert "start_time IS NULL" in index_cond and "cdr_id >" in index_cond, scan
    finally:
        await conn.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def test_csv_export_matches_the_json_records(pipeline: Pipeline, ny_empty: Tenant) -> None:
    t = ny_empty
    rows = varied_rows(t)
    await insert(pipeline, rows)
    records = await search(pipeline, t)
    lines = await export(pipeline, t)
    assert len(lines) == len(records) == len(rows)
    feed_ids = {
        str(r["cdr_id"]): r["feed_id"]
        for r in await pipeline.sql(
            "SELECT cdr_id, feed_id FROM cdr WHERE database_id = $1", t.database_id
        )
    }
    for record, line in zip(records, lines, strict=True):
        for column in RECORD_COLUMNS:
            if column == "feed_id":
                assert line[column] == str(feed_ids[record["cdr_id"]])
            else:
                assert line[column] == _cell(record.get(column)), (record["ivruniqueid"], column)
        rest = {k: v for k, v in record.items() if k not in RECORD_COLUMNS}
        assert (json.loads(line["extra"]) if line["extra"] else {}) == rest, record["ivruniqueid"]
    by_id = {line["ivruniqueid"]: line for line in lines}
    assert by_id["extras"]["start_time"] == "2026-03-10T08:01:00.000250-04:00"
    assert by_id["winter"]["start_time"] == "2026-01-04T22:00:00-05:00"
    assert (by_id["yen"]["price"], by_id["yen"]["rate"]) == ("13", "1.12345679")
    assert by_id["yen"]["cost"] == ""
    kwd = next(line for line in lines if line["currency"] == "KWD")
    assert kwd["price"] == "13" and kwd["ivruniqueid"] == kwd["cdr_id"]
    assert json.loads(by_id["extras"]["extra"]) == {
        "queue": {"n": [1, 2]},
        "note": 'he said "hi",\nthen left',
        "ü": "ö",
    }
    assert json.loads(by_id["untimed"]["extra"]) == {"start_time_raw": "2026-13-01"}


async def test_csv_export_of_50000_rows_streams_in_chunks(
    pipeline: Pipeline, ny_empty: Tenant
) -> None:
    t = ny_empty
    total = 50_000
    await pipeline.sql(
        """
        INSERT INTO cdr (cdr_id, database_id, api_account, external_id, originating_number,
            destination_number, start_time, duration, disposition, received_at, rated)
        SELECT gen_random_uuid(), $1, $2, 'x' || g, '100', '1613555' || lpad(g::text, 5, '0'),
            $3::timestamptz + g * interval '1 second', g % 600, 'ANSWERED', now(), true
        FROM generate_series(1, $4) g
        """,
        t.database_id,
        t.account,
        T0,
        total,
    )
    # The app itself, not an httpx client: ASGITransport gathers the whole body before it
    # answers, which would hide whether it streams. `send` here holds the response after
    # its first chunk until the test lets it go.
    app = pipeline.apps["notifier"]
    token = base64.b64encode(f"{t.login}:{t.password}".encode())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/cdrs",
        "raw_path": b"/v1/cdrs",
        "query_string": b"format=csv",
        "root_path": "",
        "headers": [(b"host", b"notifier"), (b"authorization", b"Basic " + token)],
        "client": ("127.0.0.1", 50000),
        "server": ("notifier", 80),
        "state": dict(pipeline.states["notifier"]),
    }
    chunks: list[bytes] = []
    started: list[dict[str, Any]] = []
    release = asyncio.Event()
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if len(chunks) == 1:
                await release.wait()

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await wait_for(lambda: len(chunks) == 1, timeout=30, what="the first chunk")
        # Held after one chunk, the COPY must come to wait on the client too: the server
        # blocked writing to its socket, nothing read ahead into the notifier's memory.
        blocked = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND state = 'active' AND wait_event = 'ClientWrite' AND query LIKE 'COPY (SELECT%'"
        )

        async def copy_waits() -> bool:
            return bool((await pipeline.sql(blocked))[0][0] == 1)

        await wait_for(copy_waits, timeout=30, what="the COPY waiting for the client")
        assert len(chunks) == 1
        release.set()
        await asyncio.wait_for(task, timeout=60)
    finally:
        finished.set()
        release.set()
        if not task.done():
            task.cancel()
    assert started[0]["status"] == 200
    body = b"".join(chunks)
    assert len(chunks) > 10  # streamed as PostgreSQL sends it, not as one body
    assert len(chunks[0]) < len(body) / 10
    lines = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(lines) == total
    assert [line["external_id"] for line in lines[:2]] == ["x1", "x2"]
    assert lines[-1]["external_id"] == f"x{total}"
    assert len({line["cdr_id"] for line in lines}) == total


async def test_another_tenants_rows_never_appear(pipeline: Pipeline) -> None:
    mine, theirs = await quiet_tenant(pipeline), await quiet_tenant(pipeline, "UTC")
    await insert(
        pipeline,
        [cdr_row(mine, f"m{n}", start_time=T0 + timedelta(minutes=n)) for n in range(3)]
        + [cdr_row(theirs, f"t{n}", start_time=T0 + timedelta(minutes=n)) for n in range(4)]
        + [cdr_row(theirs, "t_untimed", start_time=None)],
    )
    assert [r["external_id"] for r in await search(pipeline, mine, limit=1)] == ["m0", "m1", "m2"]
    assert [r["external_id"] for r in await export(pipeline, mine)] == ["m0", "m1", "m2"]
    both = await search(pipeline, mine, caller="1", billing_group=mine.package, rated="true")
    assert [r["external_id"] for r in both] == ["m0", "m1", "m2"]
    # Their cursor, handed to me, is only a position: it shows none of their rows.
    resp = await pipeline.notifier.get(
        "/v1/cdrs", params={"limit": 1}, auth=(theirs.login, theirs.password)
    )
    cursor = resp.json()["next_cursor"]
    resp = await pipeline.notifier.get(
        "/v1/cdrs", params={"cursor": cursor}, auth=(mine.login, mine.password)
    )
    assert {r["database_id"] for r in resp.json()["cdrs"]} <= {mine.database_id}
    assert [r["database_id"] for r in await search(pipeline, theirs)] == [theirs.database_id] * 5

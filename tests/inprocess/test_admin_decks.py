"""Rate decks through the admin API: validated as money line by line, dates read in the
tenant's zone, bounded bodies, 100,000 lines loaded fast and off the event loop, and a search
that takes `%` and `_` literally."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import ADMIN_TOKEN, Tenant, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
CSV = {**AUTH, "content-type": "text/csv"}
KEPT = ["1", "1418", "1613"]  # the prefixes of the tenant's deck (tests.helpers.DECK_CSV)


def _deck_url(tenant: Tenant, package: str | None = None) -> str:
    return f"/v1/admin/tenants/{tenant.database_id}/packages/{package or tenant.package}/rates"


async def _lines(pipeline: Pipeline, url: str, **params: Any) -> dict[str, Any]:
    resp = await pipeline.rater.get(url, params=params, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _big_deck(lines: int) -> bytes:
    rows = ["prefix,destination,rate,increment,initial_increment,connect_fee,effective_from"]
    rows += [
        f"{2000000 + i},Zone {i},0.0{i % 97:02d}5,6,30,0.01,2026-01-01T00:00:00Z"
        for i in range(lines)
    ]
    return "\n".join(rows).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"prefix,rate\n1-418,1\n", "line 2: prefix '1-418' must be digits only"),
        (b"prefix,rate\n" + b"1" * 21 + b",1\n", "line 2: prefix must have at most 20 digits"),
        (b"prefix,rate\n+,1\n", "line 2: prefix missing"),
        (b"prefix,rate\n1,1000000000000\n", "line 2: rate must be below 10^12"),
        (b"prefix,rate\n1,0.123456789\n", "line 2: rate must be below 10^12 with at most 8"),
        (b"prefix,rate,connect_fee\n1,1,-0.01\n", "line 2: connect_fee must be a non-negative"),
        (b"prefix,rate,connect_fee\n1,1,Infinity\n", "line 2: connect_fee must be a non-negative"),
        (
            b"prefix,rate,increment\n1,1,86401\n",
            "line 2: increment must be a whole number of seconds, 1 to 86400",
        ),
        (b"prefix,rate,increment\n1,1,1.5\n", "line 2: increment must be a whole number"),
        (b"prefix,rate,increment\n1,1,\xd9\xa3\n", "line 2: increment must be a whole number"),
        (
            b"prefix,rate,effective_to\n1,1,2026-13-01\n",
            "line 2: effective_to '2026-13-01' is not an ISO 8601 date/time",
        ),
        (
            b"prefix,rate,effective_from\n1,1,1066-10-14\n",
            "line 2: effective_from must be between 1900 and 9998",
        ),
        (
            b"prefix,rate,effective_from,effective_to\n1,1,2026-01-01,2026-01-01\n",
            "line 2: effective_to must be after effective_from",
        ),
        (b"prefix,rate\n1,1\n1,2\n", "line 3: same prefix, direction, effective_from and"),
        (b"prefix,rate,destination\n1,1," + b"x" * 201 + b"\n", "line 2: destination is longer"),
        (b'[{"prefix": "1", "rate": true}]', "item 1: rate must be text or a number"),
        (b'[{"prefix": ["1"], "rate": 1}]', "item 1: prefix must be text or a number"),
        (b'[{"prefix": "1", "rate": 1, "destination": "a\\u0000b"}]', "item 1: destination"),
        (b'[{"prefix": "1", "rate": 1, "direction": "up"}]', "item 1: direction 'up' must"),
    ],
)
async def test_each_money_rule_is_a_422_naming_the_line(
    pipeline: Pipeline, tenant: Tenant, body: bytes, message: str
) -> None:
    resp = await pipeline.rater.put(_deck_url(tenant), content=body, headers=CSV)
    assert resp.status_code == 422, resp.text
    assert resp.json()["message"].startswith(message)
    kept = await _lines(pipeline, _deck_url(tenant))
    assert [r["prefix"] for r in kept["rates"]] == KEPT


async def test_every_bad_line_is_counted_and_the_first_hundred_listed(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    rows = ["prefix,rate,increment"] + [f"{100 + i},0.01,{i % 2}" for i in range(400)]
    resp = await pipeline.rater.put(_deck_url(tenant), content="\n".join(rows), headers=CSV)
    assert resp.status_code == 422
    body = resp.json()
    # Lines 2, 4, 6, ... have increment 0: 200 bad lines, the first 100 listed in order.
    assert body["message"] == (
        "line 2: increment must be a whole number of seconds, 1 to 86400 (200 bad lines in all)"
    )
    assert body["detail"]["bad"] == 200 and body["detail"]["listed"] == 100
    assert [e["line"] for e in body["detail"]["errors"]] == list(range(2, 202, 2))
    kept = await _lines(pipeline, _deck_url(tenant))
    assert [r["prefix"] for r in kept["rates"]] == KEPT


async def test_dates_without_an_offset_are_the_tenants_local_time(pipeline: Pipeline) -> None:
    tenant = await pipeline.tenant(timezone="America/New_York")
    deck = [
        {"prefix": "44", "rate": "0.1", "effective_from": "2026-03-01"},
        {"prefix": "44", "rate": "0.2", "effective_from": "2026-07-01T08:30"},
        {"prefix": "44", "rate": "0.3", "effective_from": "2026-09-01T08:30:00+02:00"},
        # 01:30 happens twice on 2026-11-01 in New York: the first one (EDT) is meant.
        {"prefix": "44", "rate": "0.4", "effective_from": "2026-11-01T01:30"},
    ]
    put = await pipeline.rater.put(_deck_url(tenant), json=deck, headers=AUTH)
    assert put.status_code == 200, put.text
    rows = await pipeline.sql(
        "SELECT rate, effective_from FROM rate_line WHERE database_id = $1 AND prefix = '44'"
        " ORDER BY effective_from",
        tenant.database_id,
    )
    utc = [r["effective_from"].strftime("%Y-%m-%dT%H:%M%z") for r in rows]
    assert utc == [
        "2026-03-01T05:00+0000",  # EST, UTC-5
        "2026-07-01T12:30+0000",  # EDT, UTC-4
        "2026-09-01T06:30+0000",  # its own offset wins
        "2026-11-01T05:30+0000",  # the first 01:30, still EDT
    ]


async def test_prefix_plus_and_time_band_are_stored(pipeline: Pipeline, tenant: Tenant) -> None:
    deck = "prefix,rate,time_band,destination\n+44,0.05,Mon-Fri 08:00-18:00,UK peak\n44,0.02,,UK\n"
    put = await pipeline.rater.put(_deck_url(tenant), content=deck, headers=CSV)
    assert put.status_code == 200, put.text
    lines = (await _lines(pipeline, _deck_url(tenant)))["rates"]
    assert [(r["prefix"], r["time_band"], r["destination"]) for r in lines] == [
        ("44", "mon-fri 08:00-18:00", "UK peak"),
        ("44", None, "UK"),
    ]


async def test_search_takes_percent_and_underscore_literally_and_pages(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    deck = [
        {"prefix": "331", "rate": "0.1", "destination": "France 100% mobile"},
        {"prefix": "332", "rate": "0.1", "destination": "France 1000 mobile"},
        {"prefix": "333", "rate": "0.1", "destination": "Fixed_Line"},
        {"prefix": "334", "rate": "0.1", "destination": "FixedXLine"},
        {"prefix": "335", "rate": "0.1", "destination": "back\\slash"},
        {"prefix": "1000", "rate": "0.1", "destination": "NANP 1000"},
    ]
    assert (await pipeline.rater.put(_deck_url(tenant), json=deck, headers=AUTH)).is_success
    url = _deck_url(tenant)

    async def found(query: str) -> list[str]:
        return [r["prefix"] for r in (await _lines(pipeline, url, query=query))["rates"]]

    assert await found("%") == ["331"]
    assert await found("100%") == ["331"]  # not a wildcard, and not a prefix search
    assert await found("_") == ["333"]
    assert await found("d_l") == ["333"]
    assert await found("\\") == ["335"]
    assert await found("FRANCE") == ["331", "332"]
    assert await found("33") == ["331", "332", "333", "334", "335"]  # a number: prefixes
    assert await found("+100") == ["1000"]
    assert await found("1000") == ["1000", "332"]  # prefix 1000, and "1000" in a name
    first = await _lines(pipeline, url, query="France", limit=1)
    assert [r["prefix"] for r in first["rates"]] == ["331"] and first["next_offset"] == 1
    second = await _lines(pipeline, url, query="France", limit=1, offset=1)
    assert [r["prefix"] for r in second["rates"]] == ["332"] and second["next_offset"] is None


async def test_a_body_over_50_mib_is_413_and_the_deck_kept(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    huge = b"prefix,rate\n" + b"1,1\n" * (50 * 2**18)  # 50 MiB + the header line
    declared = await pipeline.rater.put(_deck_url(tenant), content=huge, headers=CSV)
    assert declared.status_code == 413
    assert declared.json()["message"].startswith("body larger than 52428800 bytes")

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
        for start in range(0, len(huge), 2**20):
            yield huge[start : start + 2**20]

    streamed = await pipeline.rater.put(_deck_url(tenant), content=chunks(), headers=CSV)
    assert streamed.status_code == 413
    kept = await _lines(pipeline, _deck_url(tenant))
    assert [r["prefix"] for r in kept["rates"]] == KEPT


async def test_a_100k_line_deck_loads_within_the_deadline(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    async def load(lines: int) -> float:
        body = _big_deck(lines)
        started = time.perf_counter()
        resp = await pipeline.rater.put(_deck_url(tenant), content=body, headers=CSV)
        took = time.perf_counter() - started
        assert resp.status_code == 200, resp.text
        assert resp.json()["lines"] == lines
        return took

    small = await load(10_000)
    took = await load(100_000)
    print(f"\n100,000-line deck replaced in {took:.2f} s (10,000 lines: {small:.2f} s)")
    # About 3 s on an idle two-core machine (the target is 5 s, which make bench reports). Here
    # the bound is relative to a tenth of the deck loaded just before, so a slow or loaded runner
    # (coverage doubles the parse) does not fail it, while a load that grows faster than the deck
    # (a per-line query, a quadratic merge: 100x the small load) does.
    assert took < 30 * small + 2, (took, small)
    (count,) = await pipeline.sql(
        "SELECT count(*), sum(rate) FROM rate_line WHERE database_id = $1 AND deck_id = $2",
        tenant.database_id,
        tenant.package,
    )
    assert count[0] == 100_000
    assert count[1] == sum(Decimal(f"0.0{i % 97:02d}5") for i in range(100_000))


async def test_rating_goes_on_while_a_large_deck_loads(pipeline: Pipeline, tenant: Tenant) -> None:
    """The upload is parsed in another process: a call submitted while it loads is priced
    about as fast as one submitted with no upload going on (measured first, in this test), not
    after the deck's seconds of CPU."""
    await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/packages/big", json={"name": "big"}, headers=AUTH
    )

    async def rated_after(external_id: str) -> tuple[float, dict[str, object]]:
        submitted = time.perf_counter()
        assert await pipeline.submit(tenant, ExternalID=external_id) == "0"

        async def stored() -> list[dict[str, object]]:
            return [r for r in await pipeline.stored(tenant) if r["external_id"] == external_id]

        (record,) = await wait_for(stored, timeout=10, what=f"record {external_id} rated")
        return time.perf_counter() - submitted, record

    baseline, _ = await rated_after("before-upload")
    body = _big_deck(200_000)
    upload = asyncio.create_task(
        pipeline.rater.put(_deck_url(tenant, "big"), content=body, headers=CSV)
    )
    latency, record = await rated_after("during-upload")
    # Parsed in a thread of this process, the GIL added about 2.5 s; on the event loop, the
    # record waits for the whole parse. The bound scales with the baseline: on a loaded runner
    # (another test worker on the other core) rating itself takes seconds, and the parse
    # worker's process takes a share of the cores (4.4 s against a 1.1 s baseline seen once
    # in a clean-clone run; a parse on the loop waits for the whole upload, asserted below).
    assert latency < 3 * baseline + 2.0, f"rated {latency:.2f} s after submission ({baseline:.2f})"
    assert record["rated"] is True and record["total"] == "0.03000000"
    assert not upload.done(), "the deck finished before the record: nothing was overlapped"
    resp = await upload
    assert resp.status_code == 200 and resp.json()["lines"] == 200_000
    print(
        f"\nrecord rated {latency:.2f} s after submission during a 200,000-line upload, "
        f"{baseline:.2f} s before it"
    )


async def test_json_numbers_stay_exact(pipeline: Pipeline, tenant: Tenant) -> None:
    deck = b'[{"prefix": 7, "rate": 0.00000001, "increment": 6, "destination": 7}]'
    put = await pipeline.rater.put(
        _deck_url(tenant), content=deck, headers={**AUTH, "content-type": "application/json"}
    )
    assert put.status_code == 200, put.text
    (line,) = (await _lines(pipeline, _deck_url(tenant)))["rates"]
    assert (line["rate"], line["increment"], line["destination"]) == ("0.00000001", 6, "7")

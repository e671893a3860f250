"""`GET /billing/feed` in process: its shape (seed 001, contract §4), re-rated records coming
again, and a client following it while writers commit out of id order, which never skips."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import uuid
from collections import Counter
from typing import Any

import asyncpg
import pytest

from cdr_notifier.feed_repository import feed_page
from cdrmodel.db import asyncpg_dsn, make_engine
from cdrmodel.record import render_record
from tests.helpers import Tenant, wait_for
from tests.inprocess.conftest import ADMIN, Pipeline
from tests.inprocess.stored_rows import NY, insert, varied_rows


async def _feed(pipeline: Pipeline, tenant: Tenant, **params: object) -> dict[str, Any]:
    resp = await pipeline.notifier.get(
        "/billing/feed",
        params={"login": tenant.login, "password": tenant.password, **params},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()  # type: ignore[no-any-return]


async def _follow(pipeline: Pipeline, tenant: Tenant, fromid: int, **params: object) -> Any:
    """(records, next_fromid) of one page."""
    body = await _feed(pipeline, tenant, fromid=fromid, **params)
    assert body["status"] == "success"
    return body["cdr"], body["next_fromid"]


@pytest.fixture
async def fed(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.tenant(timezone="Europe/Paris")
    for i in range(5):
        fields = {"ExternalID": f"f{i}", "StartDateTime": f"2026-05-0{i + 1} 12:00:00"}
        assert await pipeline.submit(tenant, **fields) == "0"
    await pipeline.wait_stored(tenant, 5)
    return tenant


async def test_pages_follow_feed_ids_from_the_inclusive_fromid(
    pipeline: Pipeline, fed: Tenant
) -> None:
    everything, after_all = await _follow(pipeline, fed, 0)
    ids = [r["feed_id"] for r in everything]
    assert [r["external_id"] for r in everything] == [f"f{i}" for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert after_all == ids[-1] + 1
    # The contract's record fields, with the feed id; times in the tenant's zone.
    first = everything[0]
    for field in (
        "caller",
        "target",
        "time",
        "duration",
        "ivruniqueid",
        "type",
        "status",
        "price",
        "cdr_id",
        "database_id",
        "api_account",
        "start_time",
        "rate",
        "total",
        "cost",
        "currency",
        "rated",
        "unrated_reason",
        "feed_id",
    ):
        assert field in first, field
    assert first["start_time"] == "2026-05-01T12:00:00+02:00"
    assert first["total"] is not None and "." in first["total"]  # a decimal string
    # fromid is inclusive; limit caps a page; next_fromid continues it.
    page, nxt = await _follow(pipeline, fed, ids[1], limit=2)
    assert [r["feed_id"] for r in page] == ids[1:3] and nxt == ids[2] + 1
    page, nxt = await _follow(pipeline, fed, nxt, limit=2)
    assert [r["feed_id"] for r in page] == ids[3:5]
    # Past the end: nothing, and the same fromid to ask again.
    assert await _follow(pipeline, fed, after_all) == ([], after_all)


async def test_csv_carries_the_same_records(pipeline: Pipeline, fed: Tenant) -> None:
    records, nxt = await _follow(pipeline, fed, 0)
    resp = await pipeline.notifier.get(
        "/billing/feed",
        params={"fromid": 0, "format": "csv"},
        auth=(fed.login, fed.password),
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["x-next-fromid"] == str(nxt)
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [int(r["feed_id"]) for r in rows] == [r["feed_id"] for r in records]
    assert [r["cdr_id"] for r in rows] == [r["cdr_id"] for r in records]
    assert [r["total"] for r in rows] == [r["total"] for r in records]
    assert rows[0]["rated"] == "true"


async def _stored(pipeline: Pipeline, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's rows as render_record reads them, in feed-id order."""
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        rows = await conn.fetch(
            "SELECT * FROM cdr WHERE database_id = $1 ORDER BY feed_id", tenant.database_id
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def _rendered(row: dict[str, Any], timezone: str) -> dict[str, Any]:
    return render_record(row, timezone=timezone) | {"feed_id": row["feed_id"]}


@pytest.fixture
async def varied(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.settled_tenant(timezone=NY)
    await insert(pipeline, varied_rows(tenant))
    return tenant


async def test_records_written_by_postgresql_equal_render_record(
    pipeline: Pipeline, varied: Tenant
) -> None:
    """PostgreSQL builds the feed's JSON; every field of every branch is what the push and
    /v1/cdrs (render_record) say, types included."""
    stored = await _stored(pipeline, varied)
    records, nxt = await _follow(pipeline, varied, 0, limit=100)
    assert len(records) == len(stored) == len(varied_rows(varied))
    assert nxt == stored[-1]["feed_id"] + 1
    for row, record in zip(stored, records, strict=True):
        assert record == _rendered(row, NY), row["external_id"]
    by_ref = {r["ivruniqueid"]: r for r in records}
    assert by_ref["extras"]["start_time"] == "2026-03-10T08:01:00.000250-04:00"
    assert by_ref["recorded"]["record"] == "https://rec.example/calls/a.wav?sig=1"
    assert by_ref["recorded"]["revision"] == 3
    assert by_ref["old-recording"]["record"] == "https://rec.example/old.wav"
    assert (by_ref["old-recording"]["did"], by_ref["old-recording"]["type"]) == ("5", "7")
    assert (by_ref["inbound-falsy"]["did"], by_ref["inbound-falsy"]["status"]) == ("200", "ANSWER")
    assert by_ref["untimed"]["time"] is None and by_ref["untimed"]["rated"] is False


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Kathmandu", "Pacific/Chatham", "Not/AZone"])
async def test_feed_times_are_shown_in_the_zone_asked(
    pipeline: Pipeline, varied: Tenant, timezone: str
) -> None:
    stored = await _stored(pipeline, varied)
    engine = make_engine(pipeline.database_url)
    try:
        async with engine.connect() as conn:
            page = await feed_page(
                conn,
                database_id=varied.database_id,
                from_id=0,
                limit=100,
                timezone=timezone,
                currency="USD",
            )
    finally:
        await engine.dispose()
    assert page.last_feed_id == stored[-1]["feed_id"]
    assert json.loads(page.records) == [_rendered(row, timezone) for row in stored]


async def test_an_empty_page_is_an_empty_array(pipeline: Pipeline, varied: Tenant) -> None:
    stored = await _stored(pipeline, varied)
    after = stored[-1]["feed_id"] + 1
    resp = await pipeline.notifier.get(
        "/billing/feed", params={"fromid": after}, auth=(varied.login, varied.password)
    )
    assert resp.json() == {"status": "success", "cdr": [], "next_fromid": after}


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"limit": 10_001}, 422, "limit"),
        ({"limit": 0}, 422, "limit"),
        ({"fromid": -1}, 422, "fromid"),
        ({"fromid": "x"}, 422, "fromid"),
        ({"format": "xml"}, 422, "format"),
        ({"password": "wrong"}, 401, ""),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    pipeline: Pipeline, fed: Tenant, params: dict[str, object], status: int, named: str
) -> None:
    resp = await pipeline.notifier.get(
        "/billing/feed", params={"login": fed.login, "password": fed.password, **params}
    )
    assert resp.status_code == status, resp.text
    assert named in resp.text


async def test_another_tenants_records_never_show(pipeline: Pipeline, fed: Tenant) -> None:
    other = await pipeline.tenant()
    assert await pipeline.submit(other, ExternalID="theirs") == "0"
    await pipeline.wait_stored(other, 1)
    mine, _ = await _follow(pipeline, fed, 0)
    theirs, _ = await _follow(pipeline, other, 0)
    assert {r["external_id"] for r in theirs} == {"theirs"}
    assert "theirs" not in {r["external_id"] for r in mine}


async def test_a_rerated_record_comes_again_with_a_new_feed_id(pipeline: Pipeline) -> None:
    tenant = await pipeline.tenant()
    assert await pipeline.submit(tenant, ExternalID="late", StartDateTime="not a time") == "0"
    (held,) = await pipeline.wait_stored(tenant, 1)
    assert held["unrated_reason"] == "invalid_start_time"
    first, after_first = await _follow(pipeline, tenant, 0)
    assert [r["cdr_id"] for r in first] == [held["cdr_id"]]
    resp = await pipeline.rater.patch(
        f"/v1/admin/tenants/{tenant.database_id}/cdrs/{held['cdr_id']}",
        json={"start_time": "2026-05-01T12:00:00Z"},
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text
    again, _ = await _follow(pipeline, tenant, after_first)
    (version,) = again
    assert version["cdr_id"] == held["cdr_id"] and version["rated"] is True
    assert version["feed_id"] > first[0]["feed_id"]
    # From the start: the record once, as its latest version.
    everything, _ = await _follow(pipeline, tenant, 0)
    assert [r["feed_id"] for r in everything] == [version["feed_id"]]


# -- writers committing out of id order ---------------------------------------------------

# Rows stored as rated: the pipeline's rater re-rates a tenant's unrated rows by itself.
_INSERT = (
    "INSERT INTO cdr (cdr_id, database_id, api_account, originating_number,"
    " destination_number, duration, disposition, received_at, start_time, rated)"
    " SELECT unnest($1::uuid[]), $2, 'ACC', '100', '16138220000', 60, 'ANSWERED', now(), now(),"
    " true RETURNING feed_id"
)
_RERATE = (
    "UPDATE cdr SET revision = revision + 1, feed_id = cdr_next_feed_id()"
    " WHERE cdr_id = ANY($1::uuid[]) RETURNING cdr_id, revision, feed_id"
)


async def test_an_id_is_not_shown_while_a_smaller_one_may_still_commit(
    pipeline: Pipeline,
) -> None:
    tenant = await pipeline.tenant()
    dsn = asyncpg_dsn(pipeline.database_url)
    slow, fast = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        (slow_row,) = await slow.fetch(_INSERT, [uuid.uuid4()], tenant.database_id)
        (fast_row,) = await fast.fetch(_INSERT, [uuid.uuid4()], tenant.database_id)  # commits
        # Taken later, committed first, and a larger id: a feed of "everything >= N" that
        # showed it now would be past the slow writer's id when that one commits.
        assert fast_row["feed_id"] > slow_row["feed_id"]
        assert await _follow(pipeline, tenant, 0) == ([], 0)
        await slow_tx.commit()
        both = [slow_row["feed_id"], fast_row["feed_id"]]

        async def shown() -> bool:
            page, _ = await _follow(pipeline, tenant, 0)
            return [r["feed_id"] for r in page] == both

        await wait_for(shown, timeout=10, what="both rows, in id order")
    finally:
        await slow.close()
        await fast.close()


WRITERS = 6
ROUNDS = 12


async def test_a_follower_sees_every_version_once_while_writers_interleave(
    pipeline: Pipeline,
) -> None:
    """Six writers, each inserting batches and re-rating what it wrote, some holding their
    transactions open (slow) while others commit at once (fast); a client follows the feed
    throughout. It must see every (cdr_id, revision) the writers left, none twice, in
    feed-id order, and the writers must really have committed out of id order."""
    tenant = await pipeline.tenant()
    dsn = asyncpg_dsn(pipeline.database_url)
    commits: list[tuple[int, list[int]]] = []  # (commit order, feed ids of that transaction)
    final: dict[uuid.UUID, int] = {}  # cdr_id -> last revision written
    done = asyncio.Event()
    rng = random.Random(11)

    async def writer(k: int) -> None:
        conn = await asyncpg.connect(dsn)
        mine: list[uuid.UUID] = []
        try:
            for _ in range(ROUNDS):
                async with conn.transaction():
                    if mine and rng.random() < 0.4:
                        again = rng.sample(mine, min(3, len(mine)))
                        rows = await conn.fetch(_RERATE, again)
                        written = {r["cdr_id"]: r["revision"] for r in rows}
                    else:
                        ids = [uuid.uuid4() for _ in range(rng.randint(1, 20))]
                        rows = await conn.fetch(_INSERT, ids, tenant.database_id)
                        written = dict.fromkeys(ids, 1)
                    if k % 2 == 0:  # a slow writer: its transaction stays open a while
                        await asyncio.sleep(rng.uniform(0.02, 0.15))
                feed_ids = [r["feed_id"] for r in rows]
                commits.append((len(commits), feed_ids))
                final.update(written)
                mine += [i for i in written if i not in mine]
        finally:
            await conn.close()

    seen: list[dict[str, Any]] = []

    async def follower() -> None:
        fromid = 0
        while not (done.is_set() and caught_up()):
            page, fromid = await _follow(pipeline, tenant, fromid, limit=7)
            seen.extend(page)

    def caught_up() -> bool:
        return set(final.items()) <= {(uuid.UUID(r["cdr_id"]), r["revision"]) for r in seen}

    following = asyncio.create_task(follower())
    await asyncio.gather(*(writer(k) for k in range(WRITERS)))
    done.set()
    await asyncio.wait_for(following, timeout=60)

    ids = [r["feed_id"] for r in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    versions = Counter((uuid.UUID(r["cdr_id"]), r["revision"]) for r in seen)
    assert max(versions.values()) == 1
    # Every record's last version was seen (earlier ones may have been superseded unseen).
    assert set(final.items()) <= set(versions), "the follower missed a version"
    # Out of order, as meant: a transaction committed after another with a smaller id.
    highest = 0
    overtaken = 0
    for _, feed_ids in sorted(commits):
        overtaken += any(f < highest for f in feed_ids)
        highest = max([highest, *feed_ids])
    assert overtaken > 0, "no writer committed out of id order: the test proved nothing"


async def test_the_feed_waits_for_an_open_writer_then_shows_everything(
    pipeline: Pipeline,
) -> None:
    """While one writer's transaction is open, the rows committed after it wait; they
    come as soon as it ends (here: rolled back, so its own row never comes)."""
    tenant = await pipeline.tenant()
    dsn = asyncpg_dsn(pipeline.database_url)
    open_conn, conn = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = open_conn.transaction()
        await tx.start()
        await open_conn.fetch(_INSERT, [uuid.uuid4()], tenant.database_id)
        committed = await conn.fetch(_INSERT, [uuid.uuid4(), uuid.uuid4()], tenant.database_id)
        assert await _follow(pipeline, tenant, 0) == ([], 0)
        await tx.rollback()

        async def shown() -> list[int]:
            page, _ = await _follow(pipeline, tenant, 0)
            return [r["feed_id"] for r in page]

        assert await wait_for(shown, timeout=10, what="the committed rows") == sorted(
            r["feed_id"] for r in committed
        )
    finally:
        await open_conn.close()
        await conn.close()

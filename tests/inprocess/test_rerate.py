"""Re-rating through the whole in-process pipeline: unrated records re-rated by themselves when
the configuration removes their cause, a start-time correction, a period re-rate, and what each
leaves behind (revision, history row, a new event on cdr.rated.v1, a second push)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from cdr_rater.rerate import Publisher
from cdrmodel.db import cdr, make_engine
from cdrmodel.kafka import RATED, KafkaClient, make_producer, topic_name
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, DECK_CSV, Receiver, Tenant, create_tenant, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _base(tenant: Tenant) -> str:
    return f"/v1/admin/tenants/{tenant.database_id}"


async def _cdrs(pipeline: Pipeline, tenant: Tenant) -> list[dict[str, Any]]:
    rows = await pipeline.sql(
        "SELECT * FROM cdr WHERE database_id = $1 ORDER BY start_time, cdr_id", tenant.database_id
    )
    return [dict(r) for r in rows]


async def _history(pipeline: Pipeline, cdr_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pipeline.sql(
        "SELECT revision, reason, old, new, published_at FROM cdr_revision"
        " WHERE cdr_id = $1 ORDER BY revision",
        cdr_id,
    )
    return [{**dict(r), "old": orjson.loads(r["old"]), "new": orjson.loads(r["new"])} for r in rows]


async def _stored_one(pipeline: Pipeline, tenant: Tenant) -> dict[str, Any]:
    async def one() -> list[dict[str, Any]]:
        return await _cdrs(pipeline, tenant)

    (row,) = await wait_for(one, timeout=30, what="the record stored")
    return row


async def _rated_events(
    infra: Infra, pipeline: Pipeline, cdr_ids: set[uuid.UUID], n: int
) -> list[dict[str, Any]]:
    """The cdr.rated.v1 events of these records, read from the topic's start until there are
    `n` (a reader of its own, no group: the pipeline's consumers are untouched)."""
    reader = AIOKafkaConsumer(
        topic_name(RATED, pipeline.namespace),
        bootstrap_servers=infra.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < n and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    event = orjson.loads(rec.value)
                    if uuid.UUID(event["cdr_id"]) in cdr_ids:
                        found.append(event)
    finally:
        await reader.stop()
    assert len(found) >= n, f"{len(found)} of {n} events on cdr.rated.v1"
    return found


async def test_no_package_record_is_rated_by_itself_when_its_extension_is_added(
    infra: Infra, pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    await pipeline.subscribe(tenant, receiver.url)
    assert await pipeline.submit(tenant, OriginatingNumber="200") == "0"
    held = await _stored_one(pipeline, tenant)
    assert (held["rated"], held["unrated_reason"], held["revision"]) == (False, "no_package", 1)
    await wait_for(lambda: receiver.requests, what="the first push")

    resp = await pipeline.rater.put(
        f"{_base(tenant)}/extensions/200",
        json={"package": tenant.package, "account": "200000_VoIP"},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text

    async def rated() -> dict[str, Any] | None:
        row = (await _cdrs(pipeline, tenant))[0]
        return row if row["rated"] else None

    row = await wait_for(rated, timeout=10, what="the record re-rated")
    assert row["revision"] == 2 and row["feed_id"] > held["feed_id"]
    assert str(row["total"]) == "0.03000000" and row["extension"] == "200"
    (change,) = await _history(pipeline, row["cdr_id"])
    assert change["revision"] == 2 and change["reason"] == "config_changed"
    assert change["old"]["rated"] is False and change["old"]["unrated_reason"] == "no_package"
    assert change["old"]["total"] is None
    assert change["new"]["rated"] is True and change["new"]["total"] == "0.03000000"
    assert change["new"]["cost"] == "0.00780000" and change["new"]["rate"] == "0.01500000"

    # Pushed again: a delivery of its own (new feed id), carrying the price.
    await wait_for(lambda: len(receiver.requests) >= 2, what="the second push")
    first, second = (orjson.loads(body) for _, body in receiver.requests[:2])
    assert first["rated"] is False and second["rated"] is True
    assert second["total"] == "0.03000000" and second["cdr_id"] == first["cdr_id"]
    assert receiver.requests[0][0]["webhook-id"] != receiver.requests[1][0]["webhook-id"]
    events = await _rated_events(infra, pipeline, {row["cdr_id"]}, 2)
    assert sorted(e["revision"] for e in events[:2]) == [1, 2]

    async def published() -> bool:
        return all(h["published_at"] is not None for h in await _history(pipeline, row["cdr_id"]))

    await wait_for(published, what="the history row marked published")


async def test_no_rate_record_is_rated_when_the_missing_rate_is_added(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, DestinationNumber="011442079460000") == "0"
    held = await _stored_one(pipeline, tenant)
    assert (held["rated"], held["unrated_reason"]) == (False, "no_rate")

    deck = DECK_CSV + "44,United Kingdom,0.1200,60,60,0\n"
    resp = await pipeline.rater.put(
        f"{_base(tenant)}/packages/{tenant.package}/rates",
        content=deck,
        headers={**AUTH, "content-type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text

    async def rated() -> dict[str, Any] | None:
        row = (await _cdrs(pipeline, tenant))[0]
        return row if row["rated"] else None

    row = await wait_for(rated, timeout=10, what="the record re-rated")
    assert row["matched_prefix"] == "44" and str(row["total"]) == "0.24000000"
    assert row["revision"] == 2 and row["cost"] is None  # the route has no 44 line
    (change,) = await _history(pipeline, row["cdr_id"])
    assert change["old"]["unrated_reason"] == "no_rate" and change["new"]["matched_prefix"] == "44"


async def test_a_change_that_removes_no_cause_writes_nothing(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, OriginatingNumber="300") == "0"
    held = await _stored_one(pipeline, tenant)
    resp = await pipeline.rater.put(
        f"{_base(tenant)}/extensions/301", json={"package": tenant.package}, headers=AUTH
    )
    assert resp.status_code == 200

    async def pass_done() -> bool:
        rows = await pipeline.sql(
            "SELECT config_version = rerated_version FROM tenant WHERE database_id = $1",
            tenant.database_id,
        )
        return bool(rows[0][0])

    await wait_for(pass_done, timeout=10, what="the re-rating pass")
    (row,) = await _cdrs(pipeline, tenant)
    assert (row["revision"], row["feed_id"], row["unrated_reason"]) == (
        1,
        held["feed_id"],
        "no_package",
    )
    assert await _history(pipeline, row["cdr_id"]) == []


async def test_a_corrected_start_time_rates_the_held_record_at_once(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, StartDateTime="not a date") == "0"
    held = await _stored_one(pipeline, tenant)
    assert held["unrated_reason"] == "invalid_start_time"
    url = f"{_base(tenant)}/cdrs/{held['cdr_id']}"

    resp = await pipeline.rater.patch(url, json={"start_time": "2026-03-01T08:00:00"}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["revision"] == 2 and body["feed_id"] > held["feed_id"]
    record = body["record"]
    assert record["rated"] is True and record["total"] == "0.03000000"
    assert record["start_time"] == "2026-03-01T08:00:00+00:00"
    (change,) = await _history(pipeline, held["cdr_id"])
    assert change["reason"] == "start_time_corrected"
    assert change["old"]["start_time"] is None
    assert change["new"]["start_time"] == "2026-03-01T08:00:00+00:00"

    # Now rated: a second correction is refused, the record untouched.
    again = await pipeline.rater.patch(
        url, json={"start_time": "2026-03-02T08:00:00"}, headers=AUTH
    )
    assert again.status_code == 409 and "rated" in again.json()["message"]
    (row,) = await _cdrs(pipeline, tenant)
    assert row["revision"] == 2


async def test_a_correction_reads_a_naive_time_in_the_tenants_zone(pipeline: Pipeline) -> None:
    tenant = await pipeline.tenant(timezone="America/Toronto")
    assert await pipeline.submit(tenant, StartDateTime="garbage") == "0"
    held = await _stored_one(pipeline, tenant)
    resp = await pipeline.rater.patch(
        f"{_base(tenant)}/cdrs/{held['cdr_id']}",
        json={"start_time": "2026-07-01T09:30:00"},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["record"]["start_time"] == "2026-07-01T09:30:00-04:00"


async def test_corrections_of_unknown_or_foreign_records_are_4xx(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    other = await create_tenant(pipeline.rater)
    assert await pipeline.submit(other, StartDateTime="not a date") == "0"
    foreign = await _stored_one(pipeline, other)
    body = {"start_time": "2026-03-01T08:00:00Z"}
    cases = [
        (f"{_base(tenant)}/cdrs/{foreign['cdr_id']}", body, 404, "not found"),
        (f"{_base(tenant)}/cdrs/{uuid.uuid4()}", body, 404, "not found"),
        (f"/v1/admin/tenants/NOSUCHDB/cdrs/{uuid.uuid4()}", body, 404, "tenant"),
        (f"{_base(other)}/cdrs/not-a-uuid", body, 422, "cdr_id"),
        (f"{_base(other)}/cdrs/{foreign['cdr_id']}", {"start_time": "soon"}, 422, "start_time"),
        (f"{_base(other)}/cdrs/{foreign['cdr_id']}", {"start": "x"}, 422, ""),
        (
            f"{_base(other)}/cdrs/{foreign['cdr_id']}",
            {"start_time": "1900-01-01T00:00:00Z"},
            422,
            "start_time",
        ),
    ]
    for url, payload, status, words in cases:
        resp = await pipeline.rater.patch(url, json=payload, headers=AUTH)
        assert resp.status_code == status, (url, payload, resp.text)
        assert words in resp.json()["message"], resp.text
    unauthorised = await pipeline.rater.patch(f"{_base(other)}/cdrs/{foreign['cdr_id']}", json=body)
    assert unauthorised.status_code == 401
    (row,) = await _cdrs(pipeline, other)
    assert row["revision"] == 1 and row["unrated_reason"] == "invalid_start_time"


async def _submit_period(pipeline: Pipeline, tenant: Tenant) -> list[dict[str, Any]]:
    starts = ["2024-01-01 10:00:00", "2024-01-15 10:00:00", "2024-01-31 23:59:59"]
    starts.append("2024-02-01 00:00:00")  # outside the period
    for i, start in enumerate(starts):
        assert await pipeline.submit(tenant, StartDateTime=start, ExternalID=f"p{i}") == "0"

    async def all_stored() -> list[dict[str, Any]]:
        rows = await _cdrs(pipeline, tenant)
        return rows if len(rows) == len(starts) else []

    return await wait_for(all_stored, what="the period's records")


async def _raise_ottawa_rate(pipeline: Pipeline, tenant: Tenant) -> None:
    deck = DECK_CSV.replace("1613,Canada - 613 Ottawa,0.0150", "1613,Canada - 613 Ottawa,0.0300")
    resp = await pipeline.rater.put(
        f"{_base(tenant)}/packages/{tenant.package}/rates",
        content=deck,
        headers={**AUTH, "content-type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text


async def test_rerate_of_a_period_reprices_with_todays_deck_and_answers_counts(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    before = await _submit_period(pipeline, tenant)
    assert all(str(r["total"]) == "0.03000000" for r in before)
    await _raise_ottawa_rate(pipeline, tenant)
    url = f"{_base(tenant)}/rerate"
    period = {"from": "2024-01-01T00:00:00", "to": "2024-02-01T00:00:00"}

    resp = await pipeline.rater.post(url, json=period, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"examined": 3, "changed": 3, "unchanged": 0, "still_unrated": 0}
    after = await _cdrs(pipeline, tenant)
    assert [str(r["total"]) for r in after] == ["0.06000000"] * 3 + ["0.03000000"]
    assert [r["revision"] for r in after] == [2, 2, 2, 1]
    for old, new in zip(before[:3], after[:3], strict=True):
        (change,) = await _history(pipeline, new["cdr_id"])
        assert change["reason"] == "rerate" and change["revision"] == 2
        assert (change["old"]["total"], change["new"]["total"]) == ("0.03000000", "0.06000000")
        assert (change["old"]["rate"], change["new"]["rate"]) == ("0.01500000", "0.03000000")
        assert new["feed_id"] > old["feed_id"]
    events = await _rated_events(infra, pipeline, {r["cdr_id"] for r in after[:3]}, 6)
    revised = [e for e in events if e["revision"] == 2]
    assert len(revised) == 3 and {e["record"]["total"] for e in revised} == {"0.06000000"}
    assert {e["feed_id"] for e in revised} == {r["feed_id"] for r in after[:3]}

    # The same re-rate again changes nothing and writes nothing.
    again = await pipeline.rater.post(url, json=period, headers=AUTH)
    assert again.json() == {"examined": 3, "changed": 0, "unchanged": 3, "still_unrated": 0}
    assert await _cdrs(pipeline, tenant) == after
    only = await pipeline.rater.post(url, json={**period, "only_unrated": True}, headers=AUTH)
    assert only.json() == {"examined": 0, "changed": 0, "unchanged": 0, "still_unrated": 0}


async def test_concurrent_rerates_of_one_period_store_one_current_price(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await _submit_period(pipeline, tenant)
    await _raise_ottawa_rate(pipeline, tenant)
    url = f"{_base(tenant)}/rerate"
    period = {"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"}
    answers = await asyncio.gather(
        *(pipeline.rater.post(url, json=period, headers=AUTH) for _ in range(3))
    )
    counts = [a.json() for a in answers]
    assert all(a.status_code == 200 for a in answers), counts
    assert sum(c["changed"] for c in counts) == 3
    assert all(c["examined"] == 3 for c in counts)
    rows = await _cdrs(pipeline, tenant)
    assert [r["revision"] for r in rows] == [2, 2, 2, 1]
    history = await pipeline.sql(
        "SELECT count(*) FROM cdr_revision WHERE database_id = $1", tenant.database_id
    )
    assert history[0][0] == 3


async def test_rerate_refuses_a_bad_period(pipeline: Pipeline, tenant: Tenant) -> None:
    url = f"{_base(tenant)}/rerate"
    cases = [
        ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, 422, "before"),
        ({"from": "2024-01-01T00:00:00Z"}, 422, "to"),
        ({"from": "1800-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, 422, "outside"),
        ({"from": "2024-01-01", "to": "2024-02-01", "extra": 1}, 422, "extra"),
    ]
    for payload, status, words in cases:
        resp = await pipeline.rater.post(url, json=payload, headers=AUTH)
        assert resp.status_code == status, (payload, resp.text)
        assert words in resp.json()["message"], resp.text
    missing = await pipeline.rater.post(
        "/v1/admin/tenants/NOSUCHDB/rerate",
        json={"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"},
        headers=AUTH,
    )
    assert missing.status_code == 404


async def test_a_rerate_whose_publication_was_lost_is_published_again(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    await _submit_period(pipeline, tenant)
    await _raise_ottawa_rate(pipeline, tenant)
    period = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}
    resp = await pipeline.rater.post(f"{_base(tenant)}/rerate", json=period, headers=AUTH)
    assert resp.json()["changed"] == 1
    row = (await _cdrs(pipeline, tenant))[0]
    await _rated_events(infra, pipeline, {row["cdr_id"]}, 2)
    # As if the process died between the commit and the ack: the history row unmarked, old.
    await pipeline.sql(
        "UPDATE cdr_revision SET published_at = NULL, changed_at = now() - interval '1 hour'"
        " WHERE cdr_id = $1",
        row["cdr_id"],
    )

    async def republished() -> bool:
        return (await _history(pipeline, row["cdr_id"]))[0]["published_at"] is not None

    await wait_for(republished, timeout=10, what="the lost publication repeated")
    events = await _rated_events(infra, pipeline, {row["cdr_id"]}, 3)
    assert [e["revision"] for e in events].count(2) == 2
    assert {e["feed_id"] for e in events if e["revision"] == 2} == {row["feed_id"]}


async def test_a_record_stored_unrated_just_after_a_pass_is_looked_at_again(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, OriginatingNumber="500") == "0"
    held = await _stored_one(pipeline, tenant)
    assert held["unrated_reason"] == "no_package"
    resp = await pipeline.rater.put(
        f"{_base(tenant)}/extensions/500", json={"package": tenant.package}, headers=AUTH
    )
    assert resp.status_code == 200

    async def rated() -> bool:
        return bool((await _cdrs(pipeline, tenant))[0]["rated"])

    await wait_for(rated, timeout=10, what="the first pass")
    # As a consumer batch that priced with the configuration before the change and committed
    # after the pass went by would leave it: unrated, priced just now, no change to come.
    await pipeline.sql(
        "UPDATE cdr SET rated = false, unrated_reason = 'no_package', total = NULL,"
        " rated_at = now() WHERE cdr_id = $1",
        held["cdr_id"],
    )
    await wait_for(rated, timeout=15, what="the settling look")


async def test_publishing_a_rerate_never_fails_or_hangs_when_kafka_is_unreachable(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # A producer that never connects (the broker unreachable since the process started):
    # the re-rated version is committed, so publishing gives up after its timeout, leaves the
    # history row unmarked for the background round, and does not raise (a raise killed the
    # rerating task, and with it the whole rater, and answered the admin call 500).
    assert await pipeline.submit(tenant) == "0"
    held = await _stored_one(pipeline, tenant)
    engine = make_engine(pipeline.database_url)
    never = KafkaClient(lambda: make_producer("127.0.0.1:9"), name="never-connected")
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(cdr).where(cdr.c.cdr_id == held["cdr_id"]))).one()
        publisher = Publisher(engine, never, "unused", timeout=0.2)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            await publisher.publish([dict(row._mapping)], zones={tenant.database_id: "UTC"})
    finally:
        await engine.dispose()

"""`POST /v1/cdrs` in process against the real PostgreSQL and Tansu: body forms, limits, strict
types, seed-003 names, auth codes, dedupe, the daily limit, one round trip per batch, 503."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import event

from cdr_ingest.batch_routes import dedupe_key
from cdr_ingest.dedupe import Candidate, Submitter, tenant_day
from cdr_ingest.parsing import MAX_BODY_BYTES, Parsed, parse_native
from cdr_ingest.repository import PgKeyStore
from tests.conftest import Infra
from tests.helpers import Tenant, create_tenant, wait_for
from tests.inprocess.batch import NDJSON, CountingSink, codes, own_ingest, post, record
from tests.inprocess.conftest import Pipeline

CDRS = "/v1/cdrs"


async def _stored_ids(pipeline: Pipeline, tenant: Tenant) -> list[str]:
    rows = await pipeline.sql("SELECT cdr_id FROM cdr WHERE database_id = $1", tenant.database_id)
    return sorted(str(r["cdr_id"]) for r in rows)


async def test_object_array_and_ndjson_bodies_are_stored_with_their_ids(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    one = await post(pipeline.ingest, tenant, CDRS, record(1, external_id="obj1"))
    many = await post(pipeline.ingest, tenant, CDRS, [record(2), record(3, disposition="busy")])
    lines = b"\n".join(orjson.dumps(record(n)) for n in (4, 5)) + b"\n"
    nd = await post(pipeline.ingest, tenant, CDRS, content=lines, headers=NDJSON)
    assert one.headers["content-type"] == "application/json"
    assert (codes(one), codes(many), codes(nd)) == ([0], [0, 0], [0, 0])
    ids = [r["id"] for resp in (one, many, nd) for r in resp.json()["results"]]
    stored = await pipeline.wait_stored(tenant, 5)
    assert sorted(r["cdr_id"] for r in stored) == sorted(ids)
    by_id = {r["cdr_id"]: r for r in stored}
    assert by_id[ids[0]]["external_id"] == "obj1"
    assert by_id[ids[2]]["disposition"] == "BUSY"
    assert by_id[ids[3]]["target"] == "16138220004"
    metrics = (await pipeline.ingest.get("/metrics")).text
    assert 'cdrflow_ingest_submissions_total{code="0",endpoint="v1_cdrs"}' in metrics


async def test_over_10_mib_or_10000_records_is_413_naming_the_limit(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    big = b"[" + b" " * MAX_BODY_BYTES + b"]"
    by_bytes = await post(pipeline.ingest, tenant, CDRS, content=big)
    assert by_bytes.status_code == 413
    assert "10485760 bytes (10 MiB)" in by_bytes.json()["message"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap while reading
        yield b"["
        for _ in range(11):
            yield b" " * (1024 * 1024)
        raise AssertionError("read past the 10 MiB cap")

    streamed = await pipeline.ingest.post(
        CDRS, content=chunked(), auth=(tenant.login, tenant.password)
    )
    assert streamed.status_code == 413 and "10 MiB" in streamed.json()["message"]
    by_count = await post(pipeline.ingest, tenant, CDRS, [{}] * 10_001)
    assert by_count.status_code == 413
    assert "10,000" in by_count.json()["message"]
    nd_count = await post(pipeline.ingest, tenant, CDRS, content=b"{}\n" * 10_001, headers=NDJSON)
    assert nd_count.status_code == 413 and "10,000" in nd_count.json()["message"]
    assert await _stored_ids(pipeline, tenant) == []


async def test_ten_thousand_records_are_taken_in_one_request(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    lines = b"\n".join(orjson.dumps(record(n % 10_000)) for n in range(10_000))
    resp = await post(pipeline.ingest, tenant, CDRS, content=lines, headers=NDJSON)
    assert codes(resp) == [0] * 10_000

    async def all_stored() -> bool:
        rows = await pipeline.sql(
            "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
        )
        return bool(rows[0]["n"] == 10_000)

    await wait_for(all_stored, timeout=60, what="10,000 stored records")


async def test_whole_numbers_are_strict_per_record(pipeline: Pipeline, tenant: Tenant) -> None:
    body = [record(1, duration=90), record(2, duration="90")]
    body += [record(3, duration=bad) for bad in (False, 12.5, -3)]
    resp = await post(pipeline.ingest, tenant, CDRS, body)
    assert codes(resp) == [0, 0, 50416, 50416, 50416]
    refused = resp.json()["results"][2:]
    assert all(r["id"] is None and "Duration" in r["message"] for r in refused)
    stored = await pipeline.wait_stored(tenant, 2)
    assert [r["duration"] for r in stored] == [90, 90]


async def test_seed_003_names_are_mapped_and_unknown_fields_kept(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    seed = {
        "caller": "100",
        "target": "16135550100",
        "time": 1772445600,  # 2026-03-02 10:00:00 UTC
        "duration": "45",
        "dialtime": 7,
        "ivruniqueid": "1772445600.77",
        "type": "Extension Outgoing",
        "status": "ANSWER",
        "queueid": "q7",
    }
    native = record(9, crm_ref="T-1", extra={"campaign": "spring"})
    resp = await post(pipeline.ingest, tenant, CDRS, [seed, native])
    assert codes(resp) == [0, 0]
    seed_id, native_id = (r["id"] for r in resp.json()["results"])
    stored = {r["cdr_id"]: r for r in await pipeline.wait_stored(tenant, 2)}
    mapped = stored[seed_id]
    assert (mapped["caller"], mapped["target"], mapped["duration"]) == ("100", "16135550100", 45)
    assert mapped["external_id"] == "1772445600.77"
    assert mapped["start_time"] == "2026-03-02T10:00:00+00:00"
    assert mapped["disposition"] == "ANSWERED" and mapped["queueid"] == "q7"
    assert stored[native_id]["crm_ref"] == "T-1" and stored[native_id]["campaign"] == "spring"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_every_auth_failure_is_401_json_with_its_code(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    db, acct, pw = tenant.database_id, tenant.account, tenant.password
    cases: list[tuple[dict[str, str], int]] = [
        ({}, 50443),
        ({"authorization": "Bearer abc"}, 50443),
        ({"authorization": "Basic !!not-base64!!"}, 50443),
        ({"authorization": _basic("NOSUCHDB/ACC", pw)}, 50443),
        ({"authorization": _basic(f"{db}/NOPE", pw)}, 50440),
        ({"authorization": _basic(db, pw)}, 50440),
        ({"authorization": "Basic " + base64.b64encode(f"{db}/{acct}".encode()).decode()}, 50300),
        ({"authorization": _basic(f"{db}/{acct}", "")}, 50300),
        ({"authorization": _basic(f"{db}/{acct}", "wrong")}, 50390),
    ]
    for headers, code in cases:
        for path in (CDRS, "/v1/pbx/freeswitch", "/v1/pbx/asterisk"):
            resp = await pipeline.ingest.post(path, json=record(), headers=headers)
            assert resp.status_code == 401, (headers, resp.text)
            assert resp.json()["code"] == code, (headers, path, resp.text)
            assert resp.json()["message"]
            assert resp.headers["www-authenticate"] == 'Basic realm="cdrflow"'
    assert await _stored_ids(pipeline, tenant) == []


async def test_duplicates_within_and_across_batches_answer_50421(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    start = {"start_time": "2026-03-02 09:00:00"}
    first = await post(
        pipeline.ingest,
        tenant,
        CDRS,
        [
            record(1, external_id="A"),
            record(2, external_id="A"),  # the ExternalID alone names the call
            record(3, **start),
            record(3, **start),  # the same natural key
            record(4),
            record(4),  # no start time: arrival minus duration repeats nothing
        ],
    )
    assert codes(first) == [0, 50421, 0, 50421, 0, 0]
    results = first.json()["results"]
    assert results[1]["id"] == results[0]["id"] and "already" in results[1]["message"]
    second = await post(
        pipeline.ingest,
        tenant,
        CDRS,
        [record(5, external_id="A"), record(3, **start), record(6, external_id="B")],
    )
    assert codes(second) == [50421, 50421, 0]
    assert second.json()["results"][0]["id"] == results[0]["id"]
    await pipeline.wait_stored(tenant, 5)
    assert len(await _stored_ids(pipeline, tenant)) == 5


async def test_daily_limit_counts_only_accepted_records(pipeline: Pipeline) -> None:
    tenant = await create_tenant(pipeline.rater, daily_limit=3)
    body = [
        record(1, duration="x"),  # refused: takes no slot
        record(2, external_id="L1"),
        record(3),
        record(4, external_id="L1"),  # duplicate: takes no slot
        record(5),
        record(6),
    ]
    resp = await post(pipeline.ingest, tenant, CDRS, body)
    assert codes(resp) == [50416, 0, 0, 50421, 0, 50429]
    assert "daily limit" in resp.json()["results"][5]["message"]
    again = await post(pipeline.ingest, tenant, CDRS, [record(7), record(8, external_id="L1")])
    assert codes(again) == [50429, 50421]
    await pipeline.wait_stored(tenant, 3)
    assert len(await _stored_ids(pipeline, tenant)) == 3


async def test_a_batch_costs_one_admit_one_acknowledge_and_one_produce(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    async with own_ingest(infra, pipeline) as own:
        await own.client.post(CDRS, json=[], auth=(tenant.login, tenant.password))
        state = own.state
        sink = CountingSink(state.publisher)
        state.submitter = Submitter(PgKeyStore(state.engine), sink)
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(state.engine.sync_engine, "before_cursor_execute", count)
        try:
            body = [record(n, external_id=f"one{n}") for n in range(300)]
            body += [record(n, start_time="2026-03-02 09:00:00") for n in range(300)]
            body += [record(n) for n in range(300)]
            resp = await post(own.client, tenant, CDRS, body)
        finally:
            event.remove(state.engine.sync_engine, "before_cursor_execute", count)
        assert codes(resp) == [0] * 900
        dedupe = [s for s in statements if "ingest_key" in s]
        assert len(dedupe) == 2, dedupe  # one admit, one acknowledge, for 600 keys
        assert "INSERT INTO ingest_key" in dedupe[0] and "UPDATE ingest_key" in dedupe[1]
        assert len(statements) <= 3, statements  # and at most the principal's lookup
        assert sink.calls == [900]
    await pipeline.wait_stored(tenant, 900, limit=1000)


async def test_a_resent_batch_is_stored_once_whether_or_not_its_answer_was_given(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    """Answer lost after 0: the resend is 50421. Ingest died after the broker's ack but before
    acknowledging the keys: the resend re-produces the same cdr_ids and is answered 0."""
    told = [record(n, external_id=f"told{n}") for n in range(3)]
    first = await post(pipeline.ingest, tenant, CDRS, told)
    assert codes(first) == [0, 0, 0]
    resent = await post(pipeline.ingest, tenant, CDRS, told)
    assert codes(resent) == [50421] * 3
    assert [r["id"] for r in resent.json()["results"]] == [r["id"] for r in first.json()["results"]]
    async with own_ingest(infra, pipeline) as own:
        await own.client.post(CDRS, json=[], auth=(tenant.login, tenant.password))
        state = own.state
        principal = await state.directory.authenticate(
            tenant.database_id, tenant.account, tenant.password
        )
        untold = [record(n, external_id=f"lost{n}") for n in range(3)]
        now = state.clock()
        parsed = parse_native(orjson.dumps(untold), content_type=None, principal=principal, now=now)
        assert all(isinstance(p, Parsed) for p in parsed)
        events = [p.event for p in parsed if isinstance(p, Parsed)]
        # What the route does up to the broker's ack, then the process "dies".
        store = PgKeyStore(state.engine)
        keys = [dedupe_key(p) for p in parsed if isinstance(p, Parsed)]
        await store.admit(
            database_id=tenant.database_id,
            api_account=tenant.account,
            day=tenant_day(now, "UTC"),
            limit=None,
            candidates=[Candidate(k, e.cdr_id) for k, e in zip(keys, events, strict=True)],
        )
        assert await state.publisher.publish_many(events) == [True] * 3
    retry = await post(pipeline.ingest, tenant, CDRS, untold)
    assert codes(retry) == [0, 0, 0]
    assert [r["id"] for r in retry.json()["results"]] == [str(e.cdr_id) for e in events]
    await pipeline.wait_stored(tenant, 6)
    stored = await pipeline.sql(
        "SELECT external_id FROM cdr WHERE database_id = $1", tenant.database_id
    )
    assert sorted(r["external_id"] for r in stored) == sorted(
        [f"told{n}" for n in range(3)] + [f"lost{n}" for n in range(3)]
    )


async def test_unreachable_kafka_or_postgresql_is_503_with_retry_after(
    infra: Infra, pipeline: Pipeline, tenant: Tenant
) -> None:
    closed = "127.0.0.1:9"  # the discard port: nothing listens on loopback here
    async with own_ingest(
        infra, pipeline, ready=False, kafka_bootstrap=closed, produce_timeout=1.0
    ) as own:
        body = [record(1, external_id=f"k{uuid.uuid4().hex[:8]}"), record(2), {"duration": 1}]
        resp = await post(own.client, tenant, CDRS, body)
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "5"
        assert resp.json()["code"] == 50503 and "retry" in resp.json()["message"]
        # The keyed record was never on Kafka: its retry is taken (0), never told 50421.
        retry = await post(pipeline.ingest, tenant, CDRS, body[:2])
        assert codes(retry) == [0, 0]
        # Only part of a batch unavailable (a duplicate needs no broker): 200, per record.
        partial = await post(own.client, tenant, CDRS, [body[0], record(4)])
        assert codes(partial) == [50421, 50503]
        assert partial.json()["results"][1]["id"] is None
    await pipeline.wait_stored(tenant, 2)
    assert len(await _stored_ids(pipeline, tenant)) == 2
    dead_db = "postgresql+asyncpg://postgres@127.0.0.1:9/nothing"
    async with own_ingest(infra, pipeline, ready=False, database_url=dead_db) as own:
        resp = await post(own.client, tenant, CDRS, [record(3)])
        assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
        assert resp.json()["code"] == 50503

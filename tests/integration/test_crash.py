"""kill -9 the rater while 2,000 CDRs stream through, or while it re-rates 2,000 of them: every
record is stored exactly once, with one current price."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator

import aiohttp
import asyncpg
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.helpers import (
    ADMIN_TOKEN,
    copies_by_external_id,
    create_tenant,
    running,
    stored_count,
    submit_all,
    wait_for,
    wait_stored,
)

pytestmark = pytest.mark.slow

TOTAL = 2000
NAMESPACE = "crash."  # its own topics and consumer groups: the shared stack is not disturbed


@pytest.fixture
def crash_stack(infra: Infra) -> Iterator[dict[str, ServiceProcess]]:
    infra.create_topics(NAMESPACE)
    env = infra.env(
        CDR_TOPIC_NAMESPACE=NAMESPACE,
        CDR_RATER_GROUP="crash-rater",
        CDR_RATER_BATCH="100",  # small batches: the kill lands between commits
        CDR_RERATE_BATCH="20",
        CDR_RERATE_REPUBLISH_SECONDS="2",
    )
    procs = {
        name: ServiceProcess(name, free_port(), env, log_path=infra.logs / f"crash-{name}.log")
        for name in ("ingest", "rater")
    }
    with running(procs.values()):
        yield procs


async def test_rater_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    infra: Infra, crash_stack: dict[str, ServiceProcess]
) -> None:
    ingest, rater = crash_stack["ingest"], crash_stack["rater"]
    tenant = await create_tenant(rater.url)
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:
        codes: dict[str, str] = {}
        sending = asyncio.create_task(
            submit_all(ingest.url, tenant, TOTAL, prefix="c", answers=codes)
        )
        # Kill once the rater is visibly mid-stream: some stored, most still coming.
        await wait_stored(conn, tenant.database_id, 200, timeout=30)
        rater.kill()
        killed_at = await stored_count(conn, tenant.database_id)
        assert killed_at < TOTAL, "the stream finished before the kill; the test proves nothing"
        await sending
        assert list(codes.values()).count("0") == TOTAL, f"ingest answers: {set(codes.values())}"

        rater.start()
        rater.wait_ready(90)
        await wait_stored(conn, tenant.database_id, TOTAL, timeout=120)

        copies = await copies_by_external_id(conn, tenant.database_id)
        assert len(copies) == TOTAL
        assert set(copies) == {f"c{i}" for i in range(TOTAL)}
        assert all(n == 1 for n in copies.values())
        priced = await conn.fetchval(
            "SELECT count(*) FROM cdr WHERE database_id = $1 AND rated AND total > 0",
            tenant.database_id,
        )
        assert priced == TOTAL
    finally:
        await conn.close()


async def test_rater_killed_mid_rerate_leaves_one_current_price_per_record(
    infra: Infra, crash_stack: dict[str, ServiceProcess]
) -> None:
    ingest, rater = crash_stack["ingest"], crash_stack["rater"]
    tenant = await create_tenant(rater.url)
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    db = tenant.database_id
    try:

        async def count(where: str) -> int:
            return await conn.fetchval(
                f"SELECT count(*) FROM cdr WHERE database_id = $1 {where}", db
            )

        codes: dict[str, str] = {}
        # From a number that is no extension yet: all 2,000 held unrated, no_package.
        await submit_all(
            ingest.url, tenant, TOTAL, prefix="c", answers=codes, OriginatingNumber="200"
        )
        assert list(codes.values()).count("0") == TOTAL, f"ingest answers: {set(codes.values())}"
        await wait_for(lambda: _at_least(count("AND NOT rated"), TOTAL), timeout=120, what="held")

        async with aiohttp.ClientSession() as session:
            async with session.put(
                f"{rater.url}/v1/admin/tenants/{db}/extensions/200",
                json={"package": tenant.package},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
        await wait_for(lambda: _at_least(count("AND revision = 2"), 100), what="re-rating begun")
        rater.kill()
        killed_at = await count("AND rated")
        assert killed_at < TOTAL, "the re-rate finished before the kill; the test proves nothing"

        rater.start()
        rater.wait_ready(90)
        await wait_for(lambda: _at_least(count("AND rated"), TOTAL), timeout=120, what="all rated")

        rows = await conn.fetch(
            "SELECT external_id, count(*) AS n, min(revision) AS lo, max(revision) AS hi"
            " FROM cdr WHERE database_id = $1 AND total > 0 GROUP BY external_id",
            db,
        )
        assert {r["external_id"] for r in rows} == {f"c{i}" for i in range(TOTAL)}
        assert all((r["n"], r["lo"], r["hi"]) == (1, 2, 2) for r in rows)
        history = await conn.fetch(
            "SELECT cdr_id, count(*) AS n FROM cdr_revision WHERE database_id = $1 GROUP BY cdr_id",
            db,
        )
        assert len(history) == TOTAL and all(h["n"] == 1 for h in history)

        # The batch committed but not acknowledged when the rater died is published again.
        async def all_published() -> bool:
            return not await conn.fetchval(
                "SELECT count(*) FROM cdr_revision WHERE database_id = $1 AND published_at IS NULL",
                db,
            )

        await wait_for(all_published, timeout=60, what="every new revision published")
    finally:
        await conn.close()


async def _at_least(value: Awaitable[int], n: int) -> bool:
    return await value >= n

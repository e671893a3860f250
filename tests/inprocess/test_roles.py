"""`--role` / CDR_ROLE: an `api` process answers its routes and runs no consumer or worker
loop; a `worker` process runs the loops, answers the probes and metrics, and 404 on the
business routes. The rater's two halves work together across processes (its admin writes
reach the worker through the database), which is what lets them scale as two Deployments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from cdr_ingest.app import create_app as ingest_app
from cdr_ingest.settings import IngestSettings
from cdr_notifier.app import create_app as notifier_app
from cdr_notifier.settings import NotifierSettings
from cdr_rater.app import create_app as rater_app
from cdr_rater.settings import RaterSettings
from cdrmodel.db import asyncpg_dsn
from cdrmodel.kafka import ALL_TOPICS, SUBMITTED, ensure_topics, make_producer, topic_name
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, DECK_CSV, create_tenant, wait_for
from tests.inprocess.conftest import ADMIN
from tests.records import submitted

# The supervised loops each service runs until stopped (Supervisor names them
# "<service>:<name>"); the consumer's connect task ends once connected, so /readyz shows it.
LOOPS = {
    "ingest": {"dedupe-pruner"},
    "rater": {"rating", "rerating"},
    "notifier": {"recorder", "dispatcher", "delivery-pruner"},
}


@pytest.fixture
async def common(infra: Infra, inproc_template: str) -> AsyncIterator[dict[str, Any]]:
    """Settings of a database (a copy of the template) and a topic namespace of its own: no
    `all` process of another test may consume what these processes leave on the topics."""
    name = f"roles_{uuid.uuid4().hex[:8]}"
    await infra.admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{inproc_template}"')
    namespace = f"{name}."
    await ensure_topics(
        infra.bootstrap, [topic_name(t, namespace) for t in ALL_TOPICS], partitions=2
    )
    try:
        yield {
            "database_url": infra.pg.url(name),
            "kafka_bootstrap": infra.bootstrap,
            "topic_namespace": namespace,
            "admin_token": ADMIN_TOKEN,
            "db_pool_size": 2,
        }
    finally:
        await infra.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def started(app: FastAPI, service: str) -> AsyncIterator[tuple[httpx.AsyncClient, set[str]]]:
    """The app with its lifespan run and /readyz 200: a client, and the names of the
    supervised loops its start spawned (tasks that existed before it are not counted)."""
    before = asyncio.all_tasks()
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url=f"http://{service}.roles",
            timeout=30,
        ) as client,
    ):

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_for(ready, timeout=60, what=f"{service} ready")
        prefix = f"{service}:"
        spawned = {
            t.get_name().removeprefix(prefix)
            for t in asyncio.all_tasks() - before
            if t.get_name().startswith(prefix)
        }
        yield client, spawned


async def _ops_answer(client: httpx.AsyncClient) -> dict[str, Any]:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    return ready.json()  # type: ignore[no-any-return]


async def _total(database_url: str, cdr_id: uuid.UUID) -> Decimal | None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchval("SELECT total FROM cdr WHERE cdr_id = $1", cdr_id)  # type: ignore[no-any-return]
    finally:
        await conn.close()


async def test_rater_api_answers_admin_and_rates_nothing_while_its_worker_rates_and_404s_admin(
    infra: Infra, common: dict[str, Any]
) -> None:
    group = {"rater_group": f"{common['topic_namespace']}rater"}
    producer = make_producer(infra.bootstrap)
    await producer.start()
    try:
        api = rater_app(RaterSettings(**common, **group, role="api"))
        async with started(api, "rater") as (admin, api_loops):
            assert api_loops.isdisjoint(LOOPS["rater"])
            assert "consumer" not in await _ops_answer(admin)
            tenant = await create_tenant(admin)  # the whole admin API answers
            event = submitted(tenant.database_id, tenant.account, duration=60)
            await producer.send_and_wait(
                topic_name(SUBMITTED, common["topic_namespace"]),
                event.model_dump_json().encode(),
                key=tenant.database_id.encode(),
            )
            assert await _total(common["database_url"], event.cdr_id) is None

            worker = rater_app(RaterSettings(**common, **group, role="worker"))
            async with started(worker, "rater") as (probes, worker_loops):
                assert LOOPS["rater"] <= worker_loops
                assert (await _ops_answer(probes))["consumer"] == "ok"
                tenant_path = f"/v1/admin/tenants/{tenant.database_id}"
                assert (await probes.get(tenant_path, headers=ADMIN)).status_code == 404
                assert (await admin.get(tenant_path, headers=ADMIN)).status_code == 200
                rejected = "/v1/admin/rejected-events"
                assert (await probes.get(rejected, headers=ADMIN)).status_code == 404

                # The record the api process left on the topic is the worker's to rate.
                await wait_for(
                    lambda: _total(common["database_url"], event.cdr_id),
                    timeout=30,
                    what="the worker rated the waiting record",
                )
                assert await _total(common["database_url"], event.cdr_id) == Decimal("0.01500000")

                # A deck replaced through the api process prices the worker's next batch.
                resp = await admin.put(
                    f"{tenant_path}/packages/{tenant.package}/rates",
                    content=DECK_CSV.replace("0.0150", "0.4500"),
                    headers={**ADMIN, "content-type": "text/csv"},
                )
                assert resp.status_code == 200, resp.text
                later = submitted(tenant.database_id, tenant.account, duration=60)
                await producer.send_and_wait(
                    topic_name(SUBMITTED, common["topic_namespace"]),
                    later.model_dump_json().encode(),
                    key=tenant.database_id.encode(),
                )
                await wait_for(
                    lambda: _total(common["database_url"], later.cdr_id),
                    timeout=30,
                    what="the worker rated the later record",
                )
                assert await _total(common["database_url"], later.cdr_id) == Decimal("0.45000000")
    finally:
        await producer.stop()


async def test_ingest_worker_only_prunes_and_ingest_api_only_serves(common: dict[str, Any]) -> None:
    async with started(ingest_app(IngestSettings(**common, role="worker")), "ingest") as (
        client,
        loops,
    ):
        assert loops >= LOOPS["ingest"]
        assert "producer" not in await _ops_answer(client)
        assert (await client.get("/api_submitcdr.aspx")).status_code == 404
        assert (await client.post("/v1/cdrs", json={})).status_code == 404
        assert (await client.get("/healthz")).status_code == 200

    async with started(ingest_app(IngestSettings(**common, role="api")), "ingest") as (
        client,
        loops,
    ):
        assert loops.isdisjoint(LOOPS["ingest"])
        assert (await _ops_answer(client))["producer"] == "ok"
        resp = await client.get("/api_submitcdr.aspx", params={"DatabaseID": "NOSUCH"})
        assert (resp.status_code, resp.text) == (200, "50443")


async def test_notifier_api_keeps_subscriptions_and_its_worker_pushes_only(
    common: dict[str, Any],
) -> None:
    settings = {**common, "notifier_group": f"{common['topic_namespace']}notifier"}
    path = "/v1/admin/rejected-events"
    async with started(notifier_app(NotifierSettings(**settings, role="api")), "notifier") as (
        client,
        loops,
    ):
        assert loops.isdisjoint(LOOPS["notifier"])
        assert "consumer" not in await _ops_answer(client)
        assert (await client.get(path, headers=ADMIN)).status_code == 200
        assert (await client.get("/v1/cdrs")).status_code == 401

    async with started(notifier_app(NotifierSettings(**settings, role="worker")), "notifier") as (
        client,
        loops,
    ):
        assert LOOPS["notifier"] <= loops
        assert (await _ops_answer(client))["consumer"] == "ok"
        assert (await client.get(path, headers=ADMIN)).status_code == 404
        assert (await client.get("/v1/cdrs")).status_code == 404

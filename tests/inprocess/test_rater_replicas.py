"""Two running rater apps in one consumer group: a deck replaced through the admin API is
used by both on their next batch, within 2 s, with no restart (each holds its own plan cache,
and the tenant's config_version tells both what changed)."""

from __future__ import annotations

import time
from decimal import Decimal

from aiokafka import AIOKafkaProducer
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from cdr_rater.app import create_app
from cdr_rater.deps import RaterState
from cdr_rater.settings import RaterSettings
from cdrmodel.events import CdrSubmitted
from cdrmodel.kafka import SUBMITTED, make_producer, topic_name
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, DECK_CSV, Tenant, wait_for
from tests.inprocess.conftest import Pipeline, PipelineFactory, lifespan_state
from tests.records import submitted

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PARTITIONS = (0, 1)  # run_pipeline creates its topics with two partitions


def _loads() -> float:
    return REGISTRY.get_sample_value("cdrflow_rater_plan_loads_total") or 0.0


async def _send_to_both(
    producer: AIOKafkaProducer, pipeline: Pipeline, tenant: Tenant, tag: str
) -> list[CdrSubmitted]:
    """One call to Ottawa (1613: 0.015/min in DECK_CSV) on each partition, so each replica
    that owns one rates one."""
    events = [
        submitted(tenant.database_id, tenant.account, external_id=f"{tag}{p}", duration=60)
        for p in PARTITIONS
    ]
    for part, event in zip(PARTITIONS, events, strict=True):
        await producer.send_and_wait(
            topic_name(SUBMITTED, pipeline.namespace),
            event.model_dump_json().encode(),
            key=tenant.database_id.encode(),
            partition=part,
        )
    return events


async def _totals(pipeline: Pipeline, events: list[CdrSubmitted]) -> list[Decimal]:
    rows = await pipeline.sql(
        "SELECT total FROM cdr WHERE cdr_id = ANY($1::uuid[])", [e.cdr_id for e in events]
    )
    return [r["total"] for r in rows]


async def _settled(states: list[RaterState]) -> bool:
    """The consumer group has finished a rebalance: each replica owns one partition of the
    two. (A replica that joins later makes the group rebalance; until it is done, a batch
    can wait seconds for its partition's new owner, which is not what this test measures.)"""
    owned = [{tp.partition for tp in (await s.consumer.get()).assignment()} for s in states]
    return all(len(o) == 1 for o in owned) and set().union(*owned) == set(PARTITIONS)


async def test_both_replicas_price_with_a_replaced_deck_within_two_seconds(
    infra: Infra, pipeline_factory: PipelineFactory
) -> None:
    async with pipeline_factory() as pipeline:
        second = create_app(
            RaterSettings(**pipeline.common, rater_group=f"{pipeline.namespace}rater")
        )
        producer = make_producer(infra.bootstrap)
        await producer.start()
        try:
            async with LifespanManager(second, startup_timeout=60, shutdown_timeout=60) as m:
                states = [pipeline.states["rater"]["rater"], lifespan_state(m)["rater"]]
                tenant = await pipeline.tenant()
                await wait_for(lambda: _settled(states), timeout=60, what="group settled")

                # Until each replica has rated a call (and so holds the tenant's plan).
                async def both_loaded() -> bool:
                    events = await _send_to_both(producer, pipeline, tenant, "warm")
                    await wait_for(
                        lambda: _stored(pipeline, events), timeout=30, what="warm-up stored"
                    )
                    return all(tenant.database_id in s.plans._tenants for s in states)

                await wait_for(both_loaded, timeout=60, what="both replicas rating")
                assert set(
                    await _totals(pipeline, await _send_to_both(producer, pipeline, tenant, "old"))
                ) <= {Decimal("0.01500000")}

                before = _loads()
                changed = time.monotonic()
                resp = await pipeline.rater.put(
                    f"/v1/admin/tenants/{tenant.database_id}/packages/{tenant.package}/rates",
                    content=DECK_CSV.replace("0.0150", "0.4500"),
                    headers={**ADMIN, "content-type": "text/csv"},
                )
                assert resp.status_code == 200, resp.text
                events = await _send_to_both(producer, pipeline, tenant, "new")
                await wait_for(lambda: _stored(pipeline, events), timeout=30, what="stored")
                seen = time.monotonic() - changed

                assert await _totals(pipeline, events) == [Decimal("0.45000000")] * 2
                assert await _settled(states)  # no rebalance in the measured window
                # Each replica reloads once per change, never per batch.
                assert _loads() - before == 2
                assert seen < 2.0, f"the new deck was used {seen:.2f} s after the change"
        finally:
            await producer.stop()


async def _stored(pipeline: Pipeline, events: list[CdrSubmitted]) -> bool:
    return len(await _totals(pipeline, events)) == len(events)

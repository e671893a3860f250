"""Graceful shutdown (issue 12 item 6), in process: the lifespan's end is what SIGTERM leads to
once uvicorn has answered the open requests. A notifier finishes and records the pushes under
way and hands back the rows it claimed but did not push; a rater stores and commits the batch
in hand. The subprocess tier sends real SIGTERMs under load (tests/integration)."""

from __future__ import annotations

import time

import httpx
from asgi_lifespan import LifespanManager

from cdr_notifier.app import create_app as notifier_app
from cdr_notifier.settings import NotifierSettings
from tests.helpers import Receiver, wait_for
from tests.inprocess.conftest import FAST_RETRIES, PipelineFactory

BACKLOG = 40


async def test_a_notifier_shut_down_mid_push_records_its_pushes_and_hands_back_the_rest(
    pipeline_factory: PipelineFactory, receiver: Receiver
) -> None:
    receiver.delay = lambda n: 0.5  # four pushes under way when the shutdown comes
    async with pipeline_factory(role="api") as pipeline:  # its notifier claims nothing
        tenant = await pipeline.tenant()
        await pipeline.subscribe(tenant, receiver.url)
        settings = NotifierSettings(
            **pipeline.common,
            **{**FAST_RETRIES, "push_endpoint_concurrency": 4},
            notifier_group=f"{pipeline.namespace}draining",
            role="worker",
        )
        async with LifespanManager(notifier_app(settings), shutdown_timeout=60) as manager:
            # Ready first: a consumer still joining its group (Tansu holds a join a few
            # seconds) is stopped only once the join is answered.
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as worker:

                async def ready() -> bool:
                    return (await worker.get("/readyz")).status_code == 200

                await wait_for(ready, timeout=60, what="the worker notifier ready")
            await pipeline.sql(
                "INSERT INTO delivery (database_id, subscription_id, cdr_id, feed_id, webhook_id,"
                " payload) SELECT $1, 'crm', gen_random_uuid(), n, 'msg_drain_' || n, '{}'"
                " FROM generate_series(1, $2) AS n",
                tenant.database_id,
                BACKLOG,
            )
            await wait_for(lambda: len(receiver.requests) >= 4, timeout=30, what="4 pushes sent")
            began = time.monotonic()
        took = time.monotonic() - began
        rows = await pipeline.sql(
            "SELECT status, locked_until, attempt_count FROM delivery WHERE database_id = $1",
            tenant.database_id,
        )
        attempts = await pipeline.sql(
            "SELECT count(*) AS n FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id"
            " WHERE d.database_id = $1",
            tenant.database_id,
        )
    delivered = [r for r in rows if r["status"] == "delivered"]
    pending = [r for r in rows if r["status"] == "pending"]
    # Every push the CRM received was answered, and its outcome written: none is pushed again.
    assert len(delivered) == len(receiver.requests) == attempts[0]["n"] >= 4
    assert len(delivered) + len(pending) == BACKLOG
    # The rest are due again at once, untried, leased to nobody: another notifier takes them
    # now, not when a lease of 3 push timeouts + 10 s runs out.
    assert all(r["locked_until"] is None and r["attempt_count"] == 0 for r in pending)
    # The pushes under way took their 0.5 s; nothing waited for the idle poll or a lease.
    assert took < 3.0, f"the notifier took {took:.2f} s to shut down"

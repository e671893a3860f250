"""Rater app factory: the lifespan owns the engine, producer, consumer loop and probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cdr_rater.admin.rerate_routes import router as rerate_router
from cdr_rater.admin.routes import router as admin_router
from cdr_rater.consumer import consume
from cdr_rater.deps import RaterLifespanState, RaterState
from cdr_rater.partitions import PartitionMaker
from cdr_rater.plans import PlanCache
from cdr_rater.quote_routes import router as quote_router
from cdr_rater.rerate import Publisher, Rerater, run_rerating
from cdr_rater.settings import RaterSettings
from cdrmodel import rejections
from cdrmodel.db import make_engine
from cdrmodel.kafka import (
    RATED,
    SUBMITTED,
    KafkaClient,
    KafkaProbe,
    make_consumer,
    make_producer,
    topic_name,
)
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.supervisor import Supervisor
from cdrmodel.web import build_app, service_ops

log = logging.getLogger("cdr_rater")


def create_app(settings: RaterSettings | None = None) -> FastAPI:
    settings = settings or RaterSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[RaterLifespanState]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        probe = KafkaProbe(settings.kafka_bootstrap)
        supervisor = Supervisor("rater")
        producer = KafkaClient(lambda: make_producer(settings.kafka_bootstrap), name="producer")
        consumer = KafkaClient(
            lambda: make_consumer(
                settings.kafka_bootstrap,
                topic_name(SUBMITTED, settings.topic_namespace),
                group_id=settings.rater_group,
            ),
            name="consumer",
        )
        plans = PlanCache()  # one per process: the consumer and re-rating price with it
        # The producer in every role: the admin API's re-rates publish their new versions.
        producer.begin(supervisor)
        rerater = Rerater(
            engine,
            Publisher(engine, producer, topic_name(RATED, settings.topic_namespace)),
            plans,
            batch=settings.rerate_batch,
        )
        clients = {"producer": producer.connected}
        # The worker loops: rating cdr.submitted.v1, re-rating after configuration changes
        # (an `api` process's admin writes bump tenant.config_version in the database, which
        # is how the workers learn of them: nothing needs to pass between the processes).
        if settings.runs_workers:
            consumer.begin(supervisor)
            clients["consumer"] = consumer.connected
            stopping = asyncio.Event()  # SIGTERM: finish the batch in hand, commit, return
            supervisor.spawn(
                "rating",
                consume(
                    engine,
                    consumer=consumer,
                    producer=producer,
                    rated_topic=topic_name(RATED, settings.topic_namespace),
                    stage=settings.rater_group,
                    batch=settings.rater_batch,
                    plans=plans,
                    stopping=stopping,
                ),
                drain=stopping.set,
            )
            supervisor.spawn(
                "rerating",
                run_rerating(
                    rerater,
                    poll=settings.rerate_poll_seconds,
                    republish_after=settings.rerate_republish_seconds,
                ),
            )
            # Next months' partitions of cdr, made ahead (every replica: one makes each).
            partitions = PartitionMaker(
                engine,
                ahead=settings.partitions_ahead,
                lock_timeout=settings.partition_lock_timeout_seconds,
                interval=settings.partition_interval_seconds,
                retry=settings.partition_retry_seconds,
            )
            supervisor.spawn("partitions", partitions.run())
        ops = service_ops(
            admin_token=settings.admin_token,
            engine=engine,
            kafka=probe.check,
            tasks=supervisor.check,
            **clients,
        )
        log.info("rater (%s) ready on %s:%s", settings.role, settings.host, settings.port)
        try:
            state = RaterState(
                engine=engine,
                directory=PrincipalDirectory(engine),
                rerater=rerater,
                plans=plans,
                consumer=consumer,
            )
            yield {"ops": ops, "rater": state}
        finally:
            await supervisor.stop(grace=settings.shutdown_grace_seconds)
            await consumer.close()
            await producer.close()
            await probe.close()
            await engine.dispose()

    return build_app(
        title="cdrflow rater",
        summary="Prices and stores CDRs; admin API for tenants, decks and extensions",
        lifespan=lifespan,
        routers=[admin_router, quote_router, rerate_router, rejections.router],
        role=settings.role,
    )

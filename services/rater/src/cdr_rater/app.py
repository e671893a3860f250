"""Rater app factory: the lifespan owns the engine, producer, consumer loop and probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cdr_rater.admin.routes import router as admin_router
from cdr_rater.consumer import consume
from cdr_rater.deps import RaterState
from cdr_rater.settings import RaterSettings
from cdrmodel.db import make_engine
from cdrmodel.kafka import (
    DEAD_LETTER,
    RATED,
    SUBMITTED,
    KafkaClient,
    KafkaProbe,
    make_consumer,
    make_producer,
    task_alive,
    topic_name,
)
from cdrmodel.web import build_app, database_check

log = logging.getLogger("cdr_rater")


def create_app(settings: RaterSettings | None = None) -> FastAPI:
    settings = settings or RaterSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        probe = KafkaProbe(settings.kafka_bootstrap)
        producer = KafkaClient(lambda: make_producer(settings.kafka_bootstrap), name="producer")
        consumer = KafkaClient(
            lambda: make_consumer(
                settings.kafka_bootstrap,
                topic_name(SUBMITTED, settings.topic_namespace),
                group_id=settings.rater_group,
            ),
            name="consumer",
        )
        producer.begin()
        consumer.begin()
        task = asyncio.create_task(
            consume(
                engine,
                consumer=consumer,
                producer=producer,
                rated_topic=topic_name(RATED, settings.topic_namespace),
                dead_letter_topic=topic_name(DEAD_LETTER, settings.topic_namespace),
                batch=settings.rater_batch,
            )
        )
        app.state.rater = RaterState(engine=engine)
        app.state.checks = {
            "database": database_check(engine),
            "kafka": probe.check,
            "producer": producer.connected,
            "consumer": consumer.connected,
            "rating": task_alive(task),
        }
        log.info("rater ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await consumer.close()
            await producer.close()
            await probe.close()
            await engine.dispose()

    return build_app(
        title="cdrflow rater",
        summary="Prices and stores CDRs; admin API for tenants, decks and extensions",
        lifespan=lifespan,
        settings=settings,
        routers=[admin_router],
    )

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
from cdr_rater.handler import RatingHandler
from cdr_rater.settings import RaterSettings
from cdrmodel.db import make_engine
from cdrmodel.kafka import (
    RATED,
    SUBMITTED,
    KafkaProbe,
    make_consumer,
    make_producer,
    task_alive,
    topic_name,
)
from cdrmodel.web import add_common_routes, database_check

log = logging.getLogger("cdr_rater")


def create_app(settings: RaterSettings | None = None, *, consume_topic: bool = True) -> FastAPI:
    settings = settings or RaterSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        producer = make_producer(settings.kafka_bootstrap)
        await producer.start()
        probe = KafkaProbe(settings.kafka_bootstrap)
        app.state.rater = RaterState(engine=engine)
        app.state.checks = {"database": database_check(engine), "kafka": probe.check}
        task: asyncio.Task[None] | None = None
        consumer = None
        if consume_topic:
            consumer = make_consumer(
                settings.kafka_bootstrap,
                topic_name(SUBMITTED, settings.topic_namespace),
                group_id=settings.rater_group,
            )
            await consumer.start()
            handler = RatingHandler(engine, producer, topic_name(RATED, settings.topic_namespace))
            task = asyncio.create_task(consume(consumer, handler, batch=settings.rater_batch))
            app.state.checks["consumer"] = task_alive(task)
        log.info("rater ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if consumer is not None:
                await consumer.stop()
            await producer.stop()
            await probe.close()
            await engine.dispose()

    app = FastAPI(
        title="cdrflow rater",
        summary="Prices and stores CDRs; admin API for tenants, decks and extensions",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    add_common_routes(app)
    app.include_router(admin_router)
    return app

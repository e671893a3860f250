"""Notifier app factory: the lifespan owns the engine, the consumer, the dispatcher, aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI

from cdr_notifier.consumer import DeliveryRecorder
from cdr_notifier.delivery import Dispatcher
from cdr_notifier.deps import NotifierState
from cdr_notifier.routes import queries, subscriptions
from cdr_notifier.settings import NotifierSettings
from cdr_notifier.urls import PublicResolver
from cdrmodel.db import make_engine
from cdrmodel.kafka import (
    RATED,
    KafkaClient,
    KafkaProbe,
    make_consumer,
    run_batches,
    task_alive,
    topic_name,
)
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.web import build_app, database_check

log = logging.getLogger("cdr_notifier")


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        probe = KafkaProbe(settings.kafka_bootstrap)
        wake = asyncio.Event()
        connector = aiohttp.TCPConnector(
            limit=settings.push_concurrency,
            ttl_dns_cache=60,
            resolver=None if settings.allow_private_webhooks else PublicResolver(),
        )
        session = aiohttp.ClientSession(connector=connector)
        app.state.notifier = NotifierState(
            engine=engine,
            directory=PrincipalDirectory(engine),
            wake=wake,
            allow_private_webhooks=settings.allow_private_webhooks,
        )
        app.state.checks = {"database": database_check(engine), "kafka": probe.check}
        consumer = KafkaClient(
            lambda: make_consumer(
                settings.kafka_bootstrap,
                topic_name(RATED, settings.topic_namespace),
                group_id=settings.notifier_group,
            ),
            name="consumer",
        )
        consumer.begin()
        recorder = DeliveryRecorder(engine, wake)

        async def record_deliveries() -> None:
            await run_batches(await consumer.get(), recorder.handle, max_records=1000)

        tasks = [
            asyncio.create_task(record_deliveries()),
            asyncio.create_task(Dispatcher(engine, session, settings, wake).run()),
        ]
        app.state.checks["consumer"] = consumer.connected
        app.state.checks["recorder"] = task_alive(tasks[0])
        app.state.checks["dispatcher"] = task_alive(tasks[1])
        log.info("notifier ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await consumer.close()
            await session.close()
            await probe.close()
            await engine.dispose()

    return build_app(
        title="cdrflow notifier",
        summary="Pushes rated CDRs to CRMs; query, feed and report APIs",
        lifespan=lifespan,
        settings=settings,
        routers=[subscriptions.router, queries.router],
    )

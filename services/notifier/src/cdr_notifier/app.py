"""Notifier app factory: the lifespan owns the engine, the consumer, the dispatcher, aiohttp."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_notifier.consumer import DeliveryRecorder
from cdr_notifier.delivery import Dispatcher
from cdr_notifier.deps import NotifierLifespanState, NotifierState
from cdr_notifier.leases import LEASE_SESSION
from cdr_notifier.repository import prune_deliveries, reseal_stored_secrets
from cdr_notifier.routes import compat_cdr, feed, queries, recordings, reports, subscriptions
from cdr_notifier.secretbox import SecretBox, parse_keys
from cdr_notifier.settings import NotifierSettings
from cdr_notifier.urls import PublicResolver
from cdrmodel import rejections, tracing
from cdrmodel.db import asyncpg_dsn, make_engine
from cdrmodel.kafka import RATED, KafkaClient, KafkaProbe, make_consumer, run_batches, topic_name
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.pruning import Pruner
from cdrmodel.supervisor import Supervisor
from cdrmodel.web import Check, build_app, service_ops

log = logging.getLogger("cdr_notifier")


def delivery_pruner(engine: AsyncEngine, settings: NotifierSettings) -> Pruner:
    """Deletes deliveries that ended (delivered, dead) `delivery_retention_days` ago."""
    keep = timedelta(days=settings.delivery_retention_days)

    async def ended(conn: AsyncConnection, now: datetime, limit: int) -> int:
        return await prune_deliveries(conn, cutoff=now - keep, limit=limit)

    return Pruner(
        engine,
        steps=[ended],
        batch=settings.delivery_prune_batch,
        pause=settings.delivery_prune_pause,
        interval=settings.delivery_prune_interval,
        what="ended deliveries",
    )


async def start_workers(
    stack: AsyncExitStack,
    settings: NotifierSettings,
    engine: AsyncEngine,
    supervisor: Supervisor,
    wake: asyncio.Event,
    box: SecretBox,
) -> KafkaClient[AIOKafkaConsumer]:
    """The worker loops (roles `worker` and `all`): the recorder (cdr.rated.v1 -> due
    deliveries), the dispatcher (pushes), the pruner of ended deliveries and the resealing of
    secrets. Their clients close with `stack`, once the supervisor has stopped the loops.
    Returns the consumer (its readiness check)."""
    connector = aiohttp.TCPConnector(
        limit=settings.push_concurrency,
        ttl_dns_cache=60,
        resolver=None if settings.allow_private_webhooks else PublicResolver(),
    )
    # No cookie jar: a jar is per host name, shared by every tenant's CRM on that host,
    # so a session cookie one CRM set would go with another tenant's pushes.
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=tracing.http_trace_configs(),  # none while tracing is off
    )
    stack.push_async_callback(session.close)
    # The dispatcher's own connections, on asyncpg directly (cdr_notifier.leases); none
    # is opened before the first claim, so a database still starting is waited out there.
    leases = await asyncpg.create_pool(
        asyncpg_dsn(settings.database_url),
        min_size=0,
        max_size=2,
        server_settings=LEASE_SESSION,
    )
    stack.push_async_callback(leases.close)
    consumer = KafkaClient(
        lambda: make_consumer(
            settings.kafka_bootstrap,
            topic_name(RATED, settings.topic_namespace),
            group_id=settings.notifier_group,
        ),
        name="consumer",
    )
    stack.push_async_callback(consumer.close)
    consumer.begin(supervisor)
    recorder = DeliveryRecorder(engine, wake, stage=settings.notifier_group)

    stopping = asyncio.Event()  # SIGTERM: the batch in hand recorded and committed, then out

    async def record_deliveries() -> None:
        source = await consumer.get_unless(stopping)
        if source is not None:
            await run_batches(
                source,
                recorder.handle,
                group=settings.notifier_group,
                max_records=1000,
                stopping=stopping,
            )

    supervisor.spawn("recorder", record_deliveries(), drain=stopping.set)
    supervisor.spawn("delivery-pruner", delivery_pruner(engine, settings).run())
    supervisor.spawn("resealing", reseal_stored_secrets(engine, box), finite=True)
    dispatcher = Dispatcher(leases, session, settings, wake, box)
    supervisor.spawn("dispatcher", dispatcher.run(), drain=dispatcher.drain)
    return consumer


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[NotifierLifespanState]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        probe = KafkaProbe(settings.kafka_bootstrap)
        supervisor = Supervisor("notifier")
        stack = AsyncExitStack()
        # Set when deliveries become due. In an `api` process nothing waits on it: the
        # workers' dispatchers find the rows a route made due on their next claim (0.5 s).
        wake = asyncio.Event()
        box = SecretBox(parse_keys(settings.webhook_keys), admin_token=settings.admin_token)
        clients: dict[str, Check] = {}
        if settings.runs_workers:
            consumer = await start_workers(stack, settings, engine, supervisor, wake, box)
            clients["consumer"] = consumer.connected
        ops = service_ops(
            admin_token=settings.admin_token,
            engine=engine,
            kafka=probe.check,
            tasks=supervisor.check,
            **clients,
        )
        state = NotifierState(
            engine=engine,
            directory=PrincipalDirectory(engine),
            wake=wake,
            allow_private_webhooks=settings.allow_private_webhooks,
            secrets=box,
        )
        log.info("notifier (%s) ready on %s:%s", settings.role, settings.host, settings.port)
        try:
            yield {"ops": ops, "notifier": state}
        finally:
            await supervisor.stop(grace=settings.shutdown_grace_seconds)
            await stack.aclose()
            await probe.close()
            await engine.dispose()

    return build_app(
        title="cdrflow notifier",
        summary="Pushes rated CDRs to CRMs; query, feed and report APIs",
        lifespan=lifespan,
        routers=[
            subscriptions.router,
            queries.router,
            feed.router,
            reports.router,
            recordings.router,
            compat_cdr.router,
            rejections.router,
        ],
        role=settings.role,
    )

"""Ingest app factory: the lifespan owns the engine, the producer and the readiness probes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from cdr_ingest.batch_routes import router as batch_router
from cdr_ingest.dedupe import Submitter
from cdr_ingest.deps import IngestLifespanState, IngestState
from cdr_ingest.groupcommit import GroupCommit
from cdr_ingest.pruner import dedupe_pruner
from cdr_ingest.publisher import Publisher, give_up_ms
from cdr_ingest.repository import PgKeyStore
from cdr_ingest.routes import compat_route, router
from cdr_ingest.settings import IngestSettings
from cdrmodel.db import make_engine
from cdrmodel.kafka import SUBMITTED, KafkaClient, KafkaProbe, make_producer, topic_name
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.supervisor import Supervisor
from cdrmodel.web import build_app, service_ops

log = logging.getLogger("cdr_ingest")


def create_app(
    settings: IngestSettings | None = None, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """The ingest app; `clock` (the arrival time) is for tests that cross a tenant's midnight."""
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[IngestLifespanState]:
        # No pre-ping: it was a tenth of ingest's CPU under compat load (a round trip per
        # checkout, two per group decision). After a PostgreSQL restart one statement fails
        # and is answered 50503 (nothing stored), and the pool reconnects.
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, pre_ping=False)
        supervisor = Supervisor("ingest")
        producer = KafkaClient(
            lambda: make_producer(
                settings.kafka_bootstrap, request_timeout_ms=give_up_ms(settings.produce_timeout)
            ),
            name="producer",
        )
        if settings.runs_api:  # a worker (the pruner alone) publishes nothing
            producer.begin(supervisor)
        probe = KafkaProbe(settings.kafka_bootstrap)
        publisher = Publisher(
            producer,
            topic_name(SUBMITTED, settings.topic_namespace),
            timeout=settings.produce_timeout,
        )
        submitter = Submitter(PgKeyStore(engine), publisher)
        state = IngestState(
            engine=engine,
            directory=PrincipalDirectory(engine),
            publisher=publisher,
            submitter=submitter,
            group=GroupCommit(
                submitter,
                max_group=settings.group_commit_size,
                max_flushes=settings.group_commit_flushes,
            ),
            clock=clock or (lambda: datetime.now(UTC)),
        )
        # Ingest's only worker loop. Replicas may all run it: each batch deletes rows it
        # locked with SKIP LOCKED, so concurrent pruners share a pass instead of colliding.
        if settings.runs_workers:
            pruner = dedupe_pruner(
                engine,
                keep_days=settings.dedupe_days,
                batch=settings.dedupe_prune_batch,
                pause=settings.dedupe_prune_pause,
                interval=settings.dedupe_prune_interval,
            )
            supervisor.spawn("dedupe-pruner", pruner.run())
        ops = service_ops(
            admin_token=settings.admin_token,
            engine=engine,
            kafka=probe.check,
            tasks=supervisor.check,
            **({"producer": producer.connected} if settings.runs_api else {}),
        )
        log.info("ingest (%s) ready on %s:%s", settings.role, settings.host, settings.port)
        try:
            yield {"ops": ops, "ingest": state}
        finally:
            await supervisor.stop()
            await producer.close()
            await probe.close()
            await engine.dispose()

    app = build_app(
        title="cdrflow ingest",
        summary="Submit call-detail records (seed 000 compatible)",
        lifespan=lifespan,
        routers=[router, batch_router],
        role=settings.role,
    )
    if settings.runs_api:
        # First: the lean compat route answers before FastAPI's documented one is tried.
        app.router.routes.insert(0, compat_route)
    return app

"""Session fixtures: one embedded PostgreSQL and one Tansu on free ports, the three services
as real processes. Each test makes its own tenant, so tests never see each other's data."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdrflow_dev.infra import EmbeddedPostgres, Tansu, free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel import tracing
from cdrmodel.db import asyncpg_dsn
from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
from cdrmodel.migrate import upgrade
from tests.helpers import ADMIN_TOKEN, Tenant, create_tenant, running


@dataclass
class Infra:
    pg: EmbeddedPostgres
    kafka: Tansu
    logs: Path

    @property
    def database_url(self) -> str:
        return self.pg.url()

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CDR_DATABASE_URL": self.database_url,
            "CDR_KAFKA_BOOTSTRAP": self.bootstrap,
            "CDR_ADMIN_TOKEN": ADMIN_TOKEN,
            "CDR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "CDR_LOG_LEVEL": "info",
            **extra,
        }

    def app_settings(self, namespace: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of an in-process app's Settings on this infra and a topic
        namespace of its own."""
        return {
            "database_url": self.database_url,
            "kafka_bootstrap": self.bootstrap,
            "admin_token": ADMIN_TOKEN,
            "topic_namespace": namespace,
            "db_pool_size": 2,
            **extra,
        }

    async def admin_sql(self, statement: str) -> None:
        """A statement on the server's `postgres` database (CREATE / DROP DATABASE)."""
        conn = await asyncpg.connect(asyncpg_dsn(self.pg.url("postgres")))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    @contextmanager
    def own_database(self, name: str) -> Iterator[str]:
        """A migrated database of its own, dropped afterwards: its URL. For tests of what
        claims from every tenant at once (a notifier, the dispatcher's statements), which
        must not see other tests' deliveries nor be seen by the session stack's notifier."""
        asyncio.run(self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(self.admin_sql(f'CREATE DATABASE "{name}"'))
        try:
            upgrade(self.pg.url(name))
            yield self.pg.url(name)
        finally:
            asyncio.run(self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def create_topics(self, namespace: str = "") -> None:
        names = [topic_name(t, namespace) for t in ALL_TOPICS]
        asyncio.run(ensure_topics(self.bootstrap, names, partitions=4))


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing installed as `cdrmodel.tracing.setup` installs it (our sampler and redaction),
    exporting to memory, for the apps built inside the test; removed again afterwards."""
    memory = InMemorySpanExporter()
    provider = tracing.make_provider("cdrflow-test")
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    try:
        yield memory
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Not under pytest's tmp_path: every pytest session started on the machine chmods
    # /tmp/pytest-of-<user> to 0700, which cuts the PostgreSQL server (run as its own user
    # when we are root) off its data directory mid-run; it then PANICs at the next checkpoint.
    base = Path(tempfile.mkdtemp(prefix="cdrflow-test-"))
    pg = EmbeddedPostgres(base / "pg", free_port())
    kafka = Tansu(free_port(), base / "tansu.log")
    pg.start()
    try:
        kafka.start()
        upgrade(pg.url())
        infra = Infra(pg, kafka, base / "logs")
        infra.create_topics()
        yield infra
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Stack:
    ingest: ServiceProcess
    rater: ServiceProcess
    notifier: ServiceProcess


@pytest.fixture(scope="session")
def stack(infra: Infra) -> Iterator[Stack]:
    procs = {
        name: ServiceProcess(name, free_port(), infra.env(), log_path=infra.logs / f"{name}.log")
        for name in ("ingest", "rater", "notifier")
    }
    with running(procs.values()):
        yield Stack(**procs)


@pytest.fixture
async def tenant(stack: Stack) -> AsyncIterator[Tenant]:
    yield await create_tenant(stack.rater.url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests (real service processes) first, in their order, then the rest:
    with two xdist workers the long ones start early and the short ones fill in around them,
    instead of a minute-long crash test starting last while the other worker sits idle.
    Whole modules move, so their module-scoped fixtures are set up once."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: order kept within

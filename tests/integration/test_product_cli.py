"""`cdrflow migrate` and `cdrflow topics` (what an image runs before the services) against the
session's embedded PostgreSQL and Tansu: they do the work, and name the problem when they cannot."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from cdrflow_dev.infra import free_port
from cdrmodel.cli import app
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN

runner = CliRunner()


async def _admin(infra: Infra, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(infra.pg.url("postgres")))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_migrate_creates_the_schema_in_an_empty_database(infra: Infra) -> None:
    name = "cli_" + uuid.uuid4().hex[:8]
    asyncio.run(_admin(infra, f'CREATE DATABASE "{name}"'))
    try:
        url = infra.pg.url(name)
        done = runner.invoke(app, ["migrate"], env={"CDR_DATABASE_URL": url})
        assert done.exit_code == 0, done.output
        assert "database migrated" in done.output
        assert {"tenant", "cdr", "delivery", "rejected_event", "alembic_version"} <= asyncio.run(
            _tables(url)
        )
        again = runner.invoke(app, ["migrate"], env={"CDR_DATABASE_URL": url})
        assert again.exit_code == 0, again.output  # idempotent: a second run changes nothing
    finally:
        asyncio.run(_admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_without_a_database_url_says_so() -> None:
    done = runner.invoke(app, ["migrate"], env={"CDR_DATABASE_URL": ""})
    assert done.exit_code == 1
    assert "CDR_DATABASE_URL is not set" in done.output


def test_migrate_names_an_unreachable_postgresql() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    done = runner.invoke(app, ["migrate"], env={"CDR_DATABASE_URL": url})
    assert done.exit_code == 1
    assert "PostgreSQL unreachable" in done.output


def test_topics_creates_the_namespaced_topics(infra: Infra) -> None:
    namespace = f"cli{uuid.uuid4().hex[:6]}."
    env = {
        "CDR_KAFKA_BOOTSTRAP": infra.bootstrap,
        "CDR_TOPIC_NAMESPACE": namespace,
        "CDR_KAFKA_PARTITIONS": "2",
        "CDR_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    done = runner.invoke(app, ["topics"], env=env)
    assert done.exit_code == 0, done.output
    wanted = {f"{namespace}cdr.submitted.v1", f"{namespace}cdr.rated.v1"}
    assert wanted <= asyncio.run(_topics(infra.bootstrap))
    assert runner.invoke(app, ["topics"], env=env).exit_code == 0  # existing topics are fine


@pytest.mark.parametrize("token", ["", "short"])
def test_topics_refuses_invalid_settings_naming_the_variable(infra: Infra, token: str) -> None:
    env = {"CDR_KAFKA_BOOTSTRAP": infra.bootstrap, "CDR_ADMIN_TOKEN": token}
    done = runner.invoke(app, ["topics"], env=env)
    assert done.exit_code == 2
    assert "CDR_ADMIN_TOKEN" in done.output


def test_topics_names_an_unreachable_broker() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"CDR_KAFKA_BOOTSTRAP": bootstrap, "CDR_ADMIN_TOKEN": ADMIN_TOKEN}
    done = runner.invoke(app, ["topics"], env=env)
    assert done.exit_code == 1
    assert f"creating topics on {bootstrap} failed" in done.output


def test_migrate_check_answers_1_until_the_schema_is_current_and_0_after(infra: Infra) -> None:
    name = "cli_" + uuid.uuid4().hex[:8]
    asyncio.run(_admin(infra, f'CREATE DATABASE "{name}"'))
    try:
        env = {"CDR_DATABASE_URL": infra.pg.url(name)}
        behind = runner.invoke(app, ["migrate", "--check"], env=env)
        assert behind.exit_code == 1
        assert "not current" in behind.output
        assert asyncio.run(_tables(infra.pg.url(name))) == set()  # --check changed nothing
        assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
        current = runner.invoke(app, ["migrate", "--check", "--wait", "5"], env=env)
        assert current.exit_code == 0, current.output
        assert "schema is current" in current.output
    finally:
        asyncio.run(_admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_check_names_an_unreachable_server_once_its_wait_is_over() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/cdrflow"
    done = runner.invoke(
        app, ["migrate", "--check", "--wait", "0.5"], env={"CDR_DATABASE_URL": url}
    )
    assert done.exit_code == 1
    assert "PostgreSQL unreachable" in done.output

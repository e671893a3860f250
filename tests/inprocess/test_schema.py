"""The migrations build exactly the schema `cdrmodel.db.metadata` describes (the partitions
of `cdr`, made at run time, aside)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from cdrmodel.db import make_engine, metadata
from cdrmodel.migrate import COMPARISON_OPTIONS
from tests.conftest import Infra


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_server_default": False, **COMPARISON_OPTIONS}
    )
    return [d for d in compare_metadata(context, metadata) if not _is_alembic_version(d)]


def _is_alembic_version(diff: Any) -> bool:
    return isinstance(diff, tuple) and getattr(diff[1], "name", None) == "alembic_version"


async def test_migrations_match_the_table_definitions(infra: Infra) -> None:
    engine = make_engine(infra.database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], "a migration and cdrmodel/db.py disagree: " + repr(diff)

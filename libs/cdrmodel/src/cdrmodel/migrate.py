"""Run the Alembic migrations in `migrations/` (at `cdrflow migrate`, `make run` and in tests)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from cdrmodel.db import asyncpg_dsn, is_cdr_partition


def migrations_dir() -> Path:
    override = os.environ.get("CDR_MIGRATIONS_DIR")
    if override:
        return Path(override)
    # libs/cdrmodel/src/cdrmodel/migrate.py -> repository root
    return Path(__file__).resolve().parents[4] / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def heads() -> set[str]:
    """The head revisions of the migrations this installation ships."""
    return set(ScriptDirectory.from_config(alembic_config("postgresql://")).get_heads())


async def _applied(database_url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return set()
        return {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


def at_head(database_url: str) -> bool:
    """Whether the database's schema is the one this installation's code expects (read only:
    what a service's init container asks before it starts, while the migrate Job runs)."""
    return asyncio.run(_applied(database_url)) == heads()


# Comparing the database with cdrmodel.db.metadata (autogenerate, tests/inprocess/test_schema):
# the partitions of `cdr` are made at run time (cdr_rater.partitions), so neither they nor the
# foreign-key constraints PostgreSQL keeps on `cdr_revision` for each of them (children of
# the one declared against `cdr`) are described, and autogenerate must never drop them.


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic's `include_name`: the partitions of `cdr` are not reflected at all."""
    return not (type_ == "table" and is_cdr_partition(name))


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's `include_object`: nor are the foreign keys that reference a partition."""
    if type_ == "foreign_key_constraint":
        return not is_cdr_partition(obj.referred_table.name)
    return True


COMPARISON_OPTIONS: dict[str, Any] = {
    "include_name": include_name,
    "include_object": include_object,
}

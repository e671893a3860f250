"""SQL more than one service needs: the tenant check every per-tenant admin call starts with,
and the rejected events the rater and the notifier both list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import rejected_event, tenant
from cdrmodel.errors import NotFound


async def require_tenant(conn: AsyncConnection, database_id: str) -> None:
    """Raises NotFound (404) unless the tenant exists."""
    found = await conn.scalar(
        select(tenant.c.database_id).where(tenant.c.database_id == database_id)
    )
    if found is None:
        raise NotFound(f"tenant {database_id!r} not found")


async def rejected_events(
    conn: AsyncConnection,
    *,
    stage: str | None,
    reason: str | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first."""
    t = rejected_event
    stmt = select(t).order_by(t.c.id.desc()).limit(limit)
    if stage is not None:
        stmt = stmt.where(t.c.stage == stage)
    if reason is not None:
        stmt = stmt.where(t.c.reason == reason)
    if before_id is not None:
        stmt = stmt.where(t.c.id < before_id)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]

"""SQL more than one service needs: the tenant checks every per-tenant admin call starts with."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import tenant
from cdrmodel.errors import NotFound


async def require_tenant(conn: AsyncConnection, database_id: str) -> None:
    """Raises NotFound (404) unless the tenant exists."""
    found = await conn.scalar(
        select(tenant.c.database_id).where(tenant.c.database_id == database_id)
    )
    if found is None:
        raise NotFound(f"tenant {database_id!r} not found")

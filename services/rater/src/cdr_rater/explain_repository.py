"""SQL of the explain route: a stored record's explanation and its revision history."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import cdr, cdr_revision


async def fetch_explained(
    conn: AsyncConnection, *, database_id: str, cdr_id: uuid.UUID
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The record (of this tenant only) and its re-rates, oldest first; None when not found."""
    row = (
        await conn.execute(
            select(
                cdr.c.cdr_id,
                cdr.c.revision,
                cdr.c.rated,
                cdr.c.unrated_reason,
                cdr.c.start_time,
                cdr.c.total,
                cdr.c.cost,
                cdr.c.currency,
                cdr.c.pricing,
            ).where(cdr.c.cdr_id == cdr_id, cdr.c.database_id == database_id)
        )
    ).first()
    if row is None:
        return None
    history = await conn.execute(
        select(
            cdr_revision.c.revision,
            cdr_revision.c.reason,
            cdr_revision.c.changed_at,
            cdr_revision.c.old,
            cdr_revision.c.new,
        )
        .where(cdr_revision.c.cdr_id == cdr_id, cdr_revision.c.database_id == database_id)
        .order_by(cdr_revision.c.revision)
    )
    return dict(row._mapping), [dict(r._mapping) for r in history]

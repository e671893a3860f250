"""SQL of the recording route: one CDR's recording URL, looked up within the caller's tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import cdr


async def recording_url(
    conn: AsyncConnection, *, database_id: str, cdr_id: uuid.UUID
) -> tuple[bool, str | None]:
    """(whether the tenant has the CDR, its recording URL or None). The tenant is part of the
    key: another tenant's CDR is not found, exactly like one that does not exist."""
    row = (
        await conn.execute(
            select(cdr.c.recording_url).where(
                cdr.c.cdr_id == cdr_id, cdr.c.database_id == database_id
            )
        )
    ).first()
    if row is None:
        return False, None
    return True, row.recording_url

"""SQL of re-rating: stored CDRs locked a keyset batch at a time, their new versions, history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, any_, bindparam, func, not_, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from cdrmodel.db import cdr, cdr_revision, tenant

# What a re-rate may change in a stored record: the rating outcome and the start time a
# correction sets. Everything else (numbers, duration, ids) is what the PBX sent and stays.
PRICED = (
    "rated",
    "unrated_reason",
    "direction",
    "extension",
    "package_id",
    "route_id",
    "account",
    "client",
    "normalized_number",
    "call_type",
    "call_billing",
    "destination_name",
    "matched_prefix",
    "billed_seconds",
    "rate",
    "total",
    "cost",
    "currency",
    "start_time",
)
_WRITTEN = (*PRICED, "pricing", "rated_at", "updated_at")


async def due_tenants(conn: AsyncConnection) -> list[tuple[str, int]]:
    """Tenants whose configuration changed since their last re-rating pass, with the version."""
    rows = await conn.execute(
        select(tenant.c.database_id, tenant.c.config_version).where(
            tenant.c.config_version > tenant.c.rerated_version
        )
    )
    return [(r.database_id, r.config_version) for r in rows]


async def mark_rerated(conn: AsyncConnection, *, database_id: str, version: int) -> None:
    await conn.execute(
        update(tenant)
        .where(tenant.c.database_id == database_id)
        .values(rerated_version=func.greatest(tenant.c.rerated_version, version))
    )


async def lock_unrated(
    conn: AsyncConnection,
    *,
    database_id: str,
    after: uuid.UUID | None,
    since: datetime | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """The next batch of the tenant's unrated records (priced at or after `since`, if given);
    rows another replica holds are skipped (it is re-rating them), so two replicas never
    re-rate one record at once."""
    stmt = select(cdr).where(cdr.c.database_id == database_id, not_(cdr.c.rated))
    if since is not None:
        stmt = stmt.where(cdr.c.rated_at >= since)
    if after is not None:
        stmt = stmt.where(cdr.c.cdr_id > after)
    stmt = stmt.order_by(cdr.c.cdr_id).limit(limit).with_for_update(skip_locked=True)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def lock_period(
    conn: AsyncConnection,
    *,
    database_id: str,
    start: datetime,
    end: datetime,
    only_unrated: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The next batch of records started in [start, end), in (start_time, cdr_id) order.

    Locked waiting, not skipping: a period re-rate answers counts for every record in it, and
    the locks it may meet (the automatic pass, a correction) last one short transaction."""
    stmt = select(cdr).where(
        cdr.c.database_id == database_id, cdr.c.start_time >= start, cdr.c.start_time < end
    )
    if only_unrated:
        stmt = stmt.where(not_(cdr.c.rated))
    if after is not None:
        stmt = stmt.where(tuple_(cdr.c.start_time, cdr.c.cdr_id) > tuple_(*after))
    stmt = stmt.order_by(cdr.c.start_time, cdr.c.cdr_id).limit(limit).with_for_update()
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def lock_one(
    conn: AsyncConnection, *, database_id: str, cdr_id: uuid.UUID
) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(cdr)
            .where(cdr.c.database_id == database_id, cdr.c.cdr_id == cdr_id)
            .with_for_update()
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def store_revisions(
    conn: AsyncConnection, *, rows: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Writes each new version (next revision, next feed_id) and its history row; returns the
    stored versions. `rows` are complete new `cdr` rows; the caller holds their locks."""
    if not rows:
        return []
    stmt = (
        update(cdr)
        .where(cdr.c.cdr_id == bindparam("key_cdr_id"))
        .values(
            {
                **{name: bindparam(f"new_{name}") for name in _WRITTEN},
                "revision": cdr.c.revision + 1,
                "feed_id": func.cdr_next_feed_id(),
            }
        )
    )
    await conn.execute(
        stmt,
        [
            {"key_cdr_id": r["cdr_id"], **{f"new_{name}": r.get(name) for name in _WRITTEN}}
            for r in rows
        ],
    )
    await conn.execute(cdr_revision.insert(), list(history))
    ids = bindparam("ids", [r["cdr_id"] for r in rows], type_=ARRAY(UUID(as_uuid=True)))
    stored = await conn.execute(select(cdr).where(cdr.c.cdr_id == any_(ids)))
    return [dict(r) for r in stored.mappings()]


async def unpublished(
    conn: AsyncConnection, *, older_than: datetime, limit: int
) -> list[dict[str, Any]]:
    """Current versions of records whose re-rate was committed but never acknowledged on the
    topic (the process died in between)."""
    pending = (
        select(cdr_revision.c.cdr_id)
        .where(cdr_revision.c.published_at.is_(None), cdr_revision.c.changed_at < older_than)
        .limit(limit)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(cdr, tenant.c.timezone.label("tenant_timezone"))
        .join(tenant, tenant.c.database_id == cdr.c.database_id)
        .where(cdr.c.cdr_id == any_(func.array(pending)))
    )
    return [dict(r) for r in rows.mappings()]


async def mark_published(
    conn: AsyncConnection, *, versions: Sequence[tuple[uuid.UUID, int]]
) -> None:
    """History rows up to each (cdr_id, revision) published: the current version was."""
    if not versions:
        return
    ids = bindparam("ids", [c for c, _ in versions], type_=ARRAY(UUID(as_uuid=True)))
    revs = bindparam("revs", [r for _, r in versions], type_=ARRAY(Integer))
    pairs = select(func.unnest(ids).label("cdr_id"), func.unnest(revs).label("revision")).subquery()
    await conn.execute(
        update(cdr_revision)
        .where(
            # = ANY first: the (cdr_id, revision) index finds the rows, whatever the plan
            cdr_revision.c.cdr_id == any_(ids),
            cdr_revision.c.cdr_id == pairs.c.cdr_id,
            cdr_revision.c.revision <= pairs.c.revision,
            cdr_revision.c.published_at.is_(None),
        )
        .values(published_at=func.now())
    )

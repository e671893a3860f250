"""Ingest's SQL: dedupe keys and daily-limit counters (tables ingest_key, ingest_usage)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdr_ingest.dedupe import Admission, Admitted, Candidate, Unavailable, allocate
from cdrmodel.db import sqlstate

log = logging.getLogger(__name__)

# One statement: insert the keys (or find them: the no-op DO UPDATE returns the row however
# recently it was committed, which a plain SELECT in the same statement would not see), and
# reserve the slots the new keys and keyless records need with a conditional increment. A key
# is new exactly when it came back with the cdr_id proposed for it. Keys go in sorted order
# so two batches sharing keys cannot deadlock.
_ADMIT_CTES = """
WITH input AS (
    SELECT * FROM unnest(CAST(:hashes AS bytea[]), CAST(:kinds AS smallint[]),
                         CAST(:ids AS uuid[])) AS t(key_hash, kind, cdr_id)
), k AS (
    INSERT INTO ingest_key AS k (database_id, key_hash, kind, cdr_id, api_account)
    SELECT :db, key_hash, kind, cdr_id, :acct FROM input ORDER BY key_hash
    ON CONFLICT (database_id, key_hash) DO UPDATE SET kind = k.kind
    RETURNING k.key_hash, k.cdr_id, k.acknowledged_at IS NOT NULL AS acknowledged
), need AS (
    SELECT CAST(:keyless AS integer)
           + (SELECT count(*) FROM k JOIN input USING (key_hash, cdr_id)) AS n
), u AS (
    INSERT INTO ingest_usage AS u (database_id, api_account, day, used)
    SELECT :db, :acct, :day, n FROM need WHERE :limited AND n > 0 AND n <= :limit
    ON CONFLICT (database_id, api_account, day) DO UPDATE SET used = u.used + EXCLUDED.used
        WHERE u.used + EXCLUDED.used <= :limit
    RETURNING used
)"""
_ADMIT_ROWS = """
SELECT (SELECT n FROM need) AS needed, (SELECT count(*) FROM u) AS reserved,
       k.key_hash, k.cdr_id, k.acknowledged
FROM (SELECT 1) AS one LEFT JOIN k ON true
"""
_ADMIT = text(_ADMIT_CTES + _ADMIT_ROWS)

# The same in one round trip, outside any transaction (one statement is atomic on its own),
# for when the slots fit, as they nearly always do. When they do not, the statement aborts
# itself (a cast of a text that is not a number, so nothing it wrote is kept) and the
# transaction above, able to grant part of a list, runs instead. The text carries a run-time
# value, so the planner cannot fold the cast into an error for every call, and the result is
# a column of the answer, so the planner cannot skip computing it.
_OVER_LIMIT_MARK = "cdrflow: over the daily limit"
_ADMIT_FAST = text(
    _ADMIT_CTES
    + f""", guard AS (
    SELECT CAST('{_OVER_LIMIT_MARK} ' || n AS integer) AS abort FROM need
    WHERE :limited AND n > 0 AND NOT EXISTS (SELECT 1 FROM u)
)"""
    + _ADMIT_ROWS.replace("AS reserved,", "AS reserved, (SELECT max(abort) FROM guard) AS aborted,")
)


# Over the limit: lock the day's row (created if missing) and read its latest count.
_LOCK_USAGE = text("""
INSERT INTO ingest_usage AS u (database_id, api_account, day, used) VALUES (:db, :acct, :day, 0)
ON CONFLICT (database_id, api_account, day) DO UPDATE SET used = u.used
RETURNING used
""")

_SETTLE = text("""
WITH refused AS (
    DELETE FROM ingest_key WHERE database_id = :db AND key_hash = ANY(CAST(:refused AS bytea[]))
)
UPDATE ingest_usage SET used = used + :granted
WHERE database_id = :db AND api_account = :acct AND day = :day
""")

# Committed without waiting for the WAL flush (synchronous_commit off for this statement's
# own transaction only). Losing a mark in a PostgreSQL crash errs the safe way: the key is
# unacknowledged again, so a resubmission re-produces the same cdr_id (stored once) and is
# answered 0 instead of 50421. The admit statement, whose loss could store a record twice,
# keeps the synchronous commit.
_ACKNOWLEDGE = text("""
UPDATE ingest_key SET acknowledged_at = now()
WHERE database_id = :db AND key_hash = ANY(CAST(:hashes AS bytea[])) AND acknowledged_at IS NULL
  AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
RETURNING key_hash
""")

_RELEASE = text("""
UPDATE ingest_usage SET used = greatest(used - :n, 0)
WHERE database_id = :db AND api_account = :acct AND day = :day
""")

_PRUNE_KEYS = text("""
DELETE FROM ingest_key WHERE (database_id, key_hash) IN (
    SELECT database_id, key_hash FROM ingest_key WHERE created_at < :cutoff
    LIMIT :n FOR UPDATE SKIP LOCKED
)
""")

_PRUNE_USAGE = text("""
DELETE FROM ingest_usage WHERE (database_id, api_account, day) IN (
    SELECT database_id, api_account, day FROM ingest_usage WHERE day < :cutoff
    LIMIT :n FOR UPDATE SKIP LOCKED
)
""")


class PgKeyStore:
    """The dedupe and limit KeyStore on PostgreSQL; any trouble reaching it is Unavailable."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def admit(
        self,
        *,
        database_id: str,
        api_account: str,
        day: date,
        limit: int | None,
        candidates: Sequence[Candidate],
    ) -> list[Admission]:
        keyed = [c for c in candidates if c.key is not None]
        if not keyed and limit is None:
            # Nothing to remember and nothing to count: no round trip at all.
            return [Admission(Admitted.NEW, c.cdr_id) for c in candidates]
        params = {
            "db": database_id,
            "acct": api_account,
            "day": day,
            "limited": limit is not None,
            "limit": limit or 0,
            "keyless": len(candidates) - len(keyed),
            "hashes": [c.key.digest for c in keyed if c.key is not None],
            "kinds": [c.key.kind for c in keyed if c.key is not None],
            "ids": [c.cdr_id for c in keyed],
        }
        try:
            try:
                async with self._engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    rows = (await auto.execute(_ADMIT_FAST, params)).all()
                    return _admissions(rows, candidates)[0]
            except DBAPIError as exc:
                if sqlstate(exc) != "22P02" or _OVER_LIMIT_MARK not in str(exc.orig):
                    raise
            async with self._engine.begin() as conn:
                rows = (await conn.execute(_ADMIT, params)).all()
                admissions, needs_slot = _admissions(rows, candidates)
                needed, reserved = rows[0].needed, rows[0].reserved
                if limit is None or needed == 0 or reserved:
                    return admissions
                return await _over_limit(conn, params, limit, candidates, admissions, needs_slot)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("dedupe admission failed: %r", exc)
            raise Unavailable(str(exc)) from exc

    async def acknowledge(self, *, database_id: str, digests: Sequence[bytes]) -> set[bytes]:
        try:
            async with self._engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                result = await auto.execute(_ACKNOWLEDGE, {"db": database_id, "hashes": digests})
                return {row.key_hash for row in result}
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(str(exc)) from exc

    async def release(self, *, database_id: str, api_account: str, day: date, count: int) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    _RELEASE, {"db": database_id, "acct": api_account, "day": day, "n": count}
                )
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(str(exc)) from exc


def _admissions(
    rows: Sequence[Sequence[Any]], candidates: Sequence[Candidate]
) -> tuple[list[Admission], list[bool]]:
    """Each candidate's Admission from the admit rows, and whether it needs a slot: a key is
    new exactly when it came back with the cdr_id proposed for it."""
    # Positional reads of the last three columns (key_hash, cdr_id, acknowledged): a batch
    # of 10,000 keys made attribute access on the rows a tenth of the request's CPU.
    found = {row[-3]: row for row in rows}
    admissions = []
    needs_slot = []
    for c in candidates:
        if c.key is None:
            admissions.append(Admission(Admitted.NEW, c.cdr_id))
            needs_slot.append(True)
            continue
        row = found[c.key.digest]
        cdr_id = row[-2]
        if cdr_id == c.cdr_id:
            admissions.append(Admission(Admitted.NEW, c.cdr_id))
            needs_slot.append(True)
        else:
            status = Admitted.ACKNOWLEDGED if row[-1] else Admitted.PENDING
            admissions.append(Admission(status, cdr_id))
            needs_slot.append(False)
    return admissions, needs_slot


async def _over_limit(
    conn: AsyncConnection,
    params: dict[str, object],
    limit: int,
    candidates: Sequence[Candidate],
    admissions: list[Admission],
    needs_slot: list[bool],
) -> list[Admission]:
    """The reservation did not fit: with the day's row locked, grant what is left in order,
    drop the refused new keys, and count the granted ones (same transaction)."""
    used = (await conn.execute(_LOCK_USAGE, params)).scalar_one()
    granted = allocate(needs_slot, max(limit - used, 0))
    refused: list[bytes] = []
    count = 0
    for n, (c, ok) in enumerate(zip(candidates, granted, strict=True)):
        if not ok:
            admissions[n] = Admission(Admitted.OVER_LIMIT, c.cdr_id)
            if c.key is not None:
                refused.append(c.key.digest)
        elif needs_slot[n]:
            count += 1
    await conn.execute(_SETTLE, {**params, "refused": refused, "granted": count})
    return admissions


async def prune_keys(conn: AsyncConnection, *, cutoff: datetime, limit: int) -> int:
    """Deletes at most `limit` keys created before `cutoff`; returns how many."""
    result = await conn.execute(_PRUNE_KEYS, {"cutoff": cutoff, "n": limit})
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


async def prune_usage(conn: AsyncConnection, *, cutoff: date, limit: int) -> int:
    """Deletes at most `limit` daily counters of days before `cutoff`; returns how many."""
    result = await conn.execute(_PRUNE_USAGE, {"cutoff": cutoff, "n": limit})
    return result.rowcount  # type: ignore[attr-defined, no-any-return]

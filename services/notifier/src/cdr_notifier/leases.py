"""The dispatcher's two statements, claim and record, on asyncpg directly.

They run thousands of times a minute on the push path, so each is one statement in one round
trip: no BEGIN/COMMIT around it (a single statement is its own transaction), no pool ping, and
no SQLAlchemy result processing (the rows are asyncpg Records, read by column name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

SubscriptionKey = tuple[str, str]  # (database_id, subscription_id)

# Settings of the connections these statements run on. A backlog arrives faster than
# autovacuum's statistics follow it: planning the claim for the few due rows the statistics
# still show, PostgreSQL bitmap-scans and sorts every due row (30 ms for 15,000, measured)
# where walking the `next_attempt_at` index stops after the first `limit` (under 1 ms).
LEASE_SESSION = {"enable_bitmapscan": "off", "application_name": "cdrflow-notifier-dispatch"}

# Due rows of enabled subscriptions, oldest first, skipping those another worker holds and
# those of subscriptions that may hold no more ($4, $5); of the rest, each subscription's first
# `room` ($6-$8: its cap less what this worker already holds of it; $3 for any other) are
# leased. The others were locked only for the statement: they stay pending, unwritten.
_CLAIM = """
WITH due AS (
    SELECT dd.id, dd.database_id, dd.subscription_id, dd.next_attempt_at
      FROM delivery dd
     WHERE dd.status = 'pending' AND dd.next_attempt_at <= now()
       AND (dd.locked_until IS NULL OR dd.locked_until < now())
       AND (SELECT ss.enabled FROM subscription ss
             WHERE ss.database_id = dd.database_id AND ss.subscription_id = dd.subscription_id)
       AND (dd.database_id, dd.subscription_id) NOT IN (
             SELECT * FROM unnest($4::text[], $5::text[]))
     ORDER BY dd.next_attempt_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED),
ranked AS (
    SELECT id, database_id, subscription_id,
           row_number() OVER (PARTITION BY database_id, subscription_id
                              ORDER BY next_attempt_at, id) AS k
      FROM due),
picked AS (
    SELECT r.id
      FROM ranked r
      LEFT JOIN unnest($6::text[], $7::text[], $8::int[]) AS room(database_id, subscription_id, n)
        ON room.database_id = r.database_id AND room.subscription_id = r.subscription_id
     WHERE r.k <= coalesce(room.n, $3))
UPDATE delivery d
   SET locked_until = now() + make_interval(secs => $2), updated_at = now()
  FROM subscription s
 WHERE d.id IN (SELECT id FROM picked)
   AND s.database_id = d.database_id AND s.subscription_id = d.subscription_id
RETURNING d.id, d.locked_until AS lease, d.database_id, d.subscription_id, d.cdr_id,
          d.webhook_id, d.payload::text AS payload_json, d.attempt_count, d.next_attempt_at,
          d.traceparent,
          s.url, s.format, s.secret, s.previous_secret, s.previous_secret_until,
          s.max_attempts, s.xmlrpc_method
"""

# Attempts inserted, outcomes written (only where this claim's lease still holds: a result
# that comes back after the lease expired, when another worker may have taken the delivery,
# or after an admin replay cleared it, changes nothing but the attempt log), subscriptions
# whose CRM answered 410 disabled: one statement, so all of it or nothing.
_RECORD = """
WITH attempts AS (
    INSERT INTO delivery_attempt
           (delivery_id, at, http_status, latency_ms, error, response_excerpt)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[], $5::text[],
                         $6::text[])),
gone AS (
    UPDATE subscription SET enabled = false, updated_at = now()
     WHERE (database_id, subscription_id) IN (SELECT * FROM unnest($12::text[], $13::text[])))
UPDATE delivery d
   SET status = u.status, attempt_count = u.attempt_count, next_attempt_at = u.next_attempt_at,
       locked_until = NULL, updated_at = now()
  FROM unnest($7::bigint[], $8::timestamptz[], $9::text[], $10::int[], $11::timestamptz[])
       AS u(id, lease, status, attempt_count, next_attempt_at)
 WHERE d.id = u.id AND d.locked_until = u.lease
"""


@dataclass(slots=True)
class Attempt:
    """One push attempt, as its `delivery_attempt` row."""

    at: datetime
    http_status: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


@dataclass(slots=True)
class Outcome:
    """What became of one claimed delivery: its new state (written only while the claim's
    `lease` holds), the attempt made (None: handed back untried), and whether its CRM answered
    410 Gone (the subscription is disabled)."""

    key: SubscriptionKey
    id: int
    lease: datetime
    status: str
    attempt_count: int
    next_attempt_at: datetime
    attempt: Attempt | None = None
    gone: bool = False


async def claim_due(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    limit: int,
    lease: float,
    cap: int,
    held: Mapping[SubscriptionKey, int] | None = None,
    full: Sequence[SubscriptionKey] = (),
) -> list[asyncpg.Record]:
    """Lease up to `limit` due deliveries of enabled subscriptions: at most `cap` less what
    the caller already `held` of each subscription, none of the subscriptions in `full`
    (passed over in the search, so their backlog does not crowd out the others' rows). A
    crashed notifier's leases expire and another takes them."""
    held = held or {}
    return await conn.fetch(
        _CLAIM,
        limit,
        float(lease),
        cap,
        [k[0] for k in full],
        [k[1] for k in full],
        [k[0] for k in held],
        [k[1] for k in held],
        [max(0, cap - n) for n in held.values()],
    )


async def record_outcomes(
    conn: asyncpg.Connection | asyncpg.Pool, outcomes: Sequence[Outcome]
) -> None:
    """Each attempt becomes a row; each delivery moves to delivered, dead or a later retry
    (or back to pending untried: `attempt_count` unchanged); the subscriptions of 410s are
    disabled."""
    tried = [(o.id, o.attempt) for o in outcomes if o.attempt is not None]
    attempts = [a for _, a in tried]
    gone = sorted({o.key for o in outcomes if o.gone})
    await conn.execute(
        _RECORD,
        [delivery_id for delivery_id, _ in tried],
        [a.at for a in attempts],
        [a.http_status for a in attempts],
        [a.latency_ms for a in attempts],
        [a.error for a in attempts],
        [a.response_excerpt for a in attempts],
        [o.id for o in outcomes],
        [o.lease for o in outcomes],
        [o.status for o in outcomes],
        [o.attempt_count for o in outcomes],
        [o.next_attempt_at for o in outcomes],
        [k[0] for k in gone],
        [k[1] for k in gone],
    )

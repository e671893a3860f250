"""The dispatcher's claim and record statements (cdr_notifier.leases) on a database of their
own: a claim takes no more of a subscription than its room, passes over full subscriptions,
walks the due index whatever the statistics say; a late outcome changes only the log."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from cdr_notifier import leases
from cdr_notifier.leases import LEASE_SESSION, Outcome, claim_due, record_outcomes
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra

TENANT = "LEASES"


@pytest.fixture(scope="module")
def database_url(infra: Infra) -> Iterator[str]:
    with infra.own_database("leases") as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the dispatcher's are, on a tenant with subscriptions A and B and no
    deliveries (each test starts from none)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url), server_settings=LEASE_SESSION)
    await conn.execute("DELETE FROM tenant WHERE database_id = $1", TENANT)
    await conn.execute("INSERT INTO tenant (database_id) VALUES ($1)", TENANT)
    await conn.executemany(
        "INSERT INTO subscription (database_id, subscription_id, url, secret)"
        " VALUES ($1, $2, 'http://127.0.0.1:9/', 'whsec_x')",
        [(TENANT, "A"), (TENANT, "B")],
    )
    yield conn
    await conn.close()


async def _due(db: asyncpg.Connection, subscription: str, n: int, *, age: float = 60) -> None:
    """`n` pending deliveries, due since `age` seconds (older first)."""
    due = datetime.now(UTC) - timedelta(seconds=age)
    columns = ("database_id", "subscription_id", "cdr_id", "feed_id", "webhook_id", "payload")
    await db.copy_records_to_table(
        "delivery",
        columns=[*columns, "next_attempt_at"],
        records=[
            (
                TENANT,
                subscription,
                uuid.uuid4(),
                i,
                f"msg_{uuid.uuid4().hex}",
                "{}",
                due + timedelta(milliseconds=i),
            )
            for i in range(n)
        ],
    )


def _count(rows: list[asyncpg.Record]) -> Counter[str]:
    return Counter(r["subscription_id"] for r in rows)


async def test_a_claim_takes_no_more_of_a_subscription_than_its_room(
    db: asyncpg.Connection,
) -> None:
    await _due(db, "A", 10, age=120)
    await _due(db, "B", 10, age=60)

    # A already holds 7 of its cap of 10: 3 more of A, and B's first 10.
    rows = await claim_due(db, limit=100, lease=30, cap=10, held={(TENANT, "A"): 7})

    assert _count(rows) == {"A": 3, "B": 10}
    # Rows past A's room were not leased (nor written): the next claim finds them due.
    unleased = await db.fetchval(
        "SELECT count(*) FROM delivery WHERE subscription_id = 'A' AND locked_until IS NULL"
    )
    assert unleased == 7
    again = await claim_due(db, limit=100, lease=30, cap=10, held={(TENANT, "A"): 10})
    assert again == []


async def test_full_subscriptions_are_passed_over_in_the_search(db: asyncpg.Connection) -> None:
    await _due(db, "A", 50, age=120)  # older: first in line
    await _due(db, "B", 5, age=60)

    rows = await claim_due(db, limit=5, lease=30, cap=100, full=[(TENANT, "A")])

    assert _count(rows) == {"B": 5}


async def test_a_claim_walks_the_due_index_however_stale_the_statistics(
    db: asyncpg.Connection,
) -> None:
    # A backlog COPYed in faster than autovacuum analyzes it: the statistics still say the
    # table is empty. Planned for that, the claim bitmap-scanned and sorted every due row.
    await db.execute("ALTER TABLE delivery SET (autovacuum_enabled = false)")
    await _due(db, "A", 5000)
    undo = db.transaction()
    await undo.start()
    try:  # EXPLAIN ANALYZE runs the claim: undone below
        explained = await db.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + leases._CLAIM, 100, 30.0, 1000, *[[]] * 5
        )
    finally:
        await undo.rollback()
    plan = json.loads(explained)[0]["Plan"]
    scans = [n for n in _nodes(plan) if n.get("Index Name") == "ix_delivery_next_attempt_at"]
    assert [n["Node Type"] for n in scans] == ["Index Scan"], scans
    assert scans[0]["Actual Rows"] <= 100, "the claim read more due rows than it takes"


async def test_an_outcome_after_its_lease_changes_only_the_attempt_log(
    db: asyncpg.Connection,
) -> None:
    await _due(db, "A", 2)
    rows = await claim_due(db, limit=2, lease=30, cap=10)
    now = datetime.now(UTC)
    current, stale = rows
    await record_outcomes(
        db,
        [
            Outcome((TENANT, "A"), current["id"], current["lease"], "delivered", 1, now),
            # Another worker's lease since: this result must not overwrite its state.
            Outcome((TENANT, "A"), stale["id"], now - timedelta(hours=1), "delivered", 1, now),
        ],
    )
    status = dict(await db.fetch("SELECT id, status FROM delivery WHERE database_id = $1", TENANT))
    assert status == {current["id"]: "delivered", stale["id"]: "pending"}


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)

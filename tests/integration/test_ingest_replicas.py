"""Two ingest processes on one database and broker share the dedupe keys and the daily limit:
what one replica accepted, the other knows, even when both are asked at the same instant."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra, Stack
from tests.helpers import create_tenant, running, unique_id, wait_for
from tests.integration.compat_clients import Ledger, stored_by_external_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicas(infra: Infra, stack: Stack) -> Iterator[list[ServiceProcess]]:
    """Two ingests of their own, on the stack's topics (the stack's rater stores for them)."""
    procs = [
        ServiceProcess(
            "ingest", free_port(), infra.env(), log_path=infra.logs / f"ingest-replica{n}.log"
        )
        for n in (1, 2)
    ]
    with running(procs):
        yield procs


@dataclass
class Pair:
    """The two replicas, a client session, a database connection and the stack's rater."""

    replicas: list[ServiceProcess]
    session: aiohttp.ClientSession
    db: asyncpg.Connection
    rater_url: str

    async def ledger(self, *, daily_limit: int | None = None) -> tuple[Ledger, str]:
        """A fresh tenant's ledger and a prefix for this test's ExternalIDs."""
        tenant = await create_tenant(self.rater_url, daily_limit=daily_limit)
        return Ledger(tenant), unique_id("R")[:6]

    async def stored(self, ledger: Ledger, count: int) -> dict[str, int]:
        async def enough() -> dict[str, int] | None:
            stored = await stored_by_external_id(self.db, ledger.tenant.database_id)
            return stored if len(stored) >= count else None

        stored: dict[str, int] = await wait_for(
            enough, timeout=60, interval=0.2, what=f"{count} records stored"
        )
        return stored


@pytest.fixture
async def pair(infra: Infra, stack: Stack, replicas: list[ServiceProcess]) -> AsyncIterator[Pair]:
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            yield Pair(replicas, session, conn, stack.rater.url)
    finally:
        await conn.close()


async def test_daily_limit_is_exact_across_two_replicas(pair: Pair) -> None:
    ledger, run = await pair.ledger(daily_limit=100)
    codes = await asyncio.gather(
        *(
            ledger.submit(pair.session, pair.replicas[i % 2].url, f"{run}{i}", timeout=60)
            for i in range(400)
        )
    )
    # Each replica was sent 200: limits kept per process would have accepted 200 in all.
    assert Counter(codes) == {"0": 100, "50429": 300}
    stored = await pair.stored(ledger, 100)
    ledger.check_stored(stored)
    assert len(stored) == 100


async def test_same_record_sent_to_both_replicas_at_once_is_accepted_once(pair: Pair) -> None:
    ledger, run = await pair.ledger()
    ids = [f"{run}{n}" for n in range(50)]
    pairs = await asyncio.gather(
        *(
            asyncio.gather(
                *(ledger.submit(pair.session, r.url, x, timeout=60) for r in pair.replicas)
            )
            for x in ids
        )
    )
    assert all(sorted(codes) == ["0", "50421"] for codes in pairs), pairs
    ledger.check_stored(await pair.stored(ledger, len(ids)))


async def test_a_record_accepted_by_one_replica_is_a_duplicate_on_the_other(pair: Pair) -> None:
    ledger, run = await pair.ledger()
    first, second = pair.replicas
    for n, (accepts, repeats) in enumerate([(first, second), (second, first)]):
        assert await ledger.submit(pair.session, accepts.url, f"{run}{n}") == "0"
        assert await ledger.submit(pair.session, repeats.url, f"{run}{n}") == "50421"
    ledger.check_stored(await pair.stored(ledger, 2))

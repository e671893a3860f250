"""kill -9 an ingest process again and again while 32 PBX-like clients stream submissions and
resend each record (same ExternalID) on no answer or 50503: every record is stored exactly
once, every one answered 0 is there, and 50421 is answered only for a stored record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra, Stack
from tests.helpers import create_tenant, unique_id, wait_for
from tests.integration.compat_clients import NO_ANSWER, Ledger, stored_by_external_id

pytestmark = pytest.mark.slow

TOTAL = 4000
CLIENTS = 32
KILLS = 4


@pytest.fixture
def crash_ingest(infra: Infra, stack: Stack) -> Iterator[ServiceProcess]:
    """An ingest of its own (the session's is never killed) on the stack's topics and rater."""
    proc = ServiceProcess(
        "ingest", free_port(), infra.env(), log_path=infra.logs / "ingest-sigkill.log"
    )
    proc.start()
    try:
        proc.wait_ready(90)
        yield proc
    finally:
        proc.stop()


async def test_ingest_killed_mid_stream_stores_every_retried_record_exactly_once(
    infra: Infra, stack: Stack, crash_ingest: ServiceProcess
) -> None:
    ledger = Ledger(await create_tenant(stack.rater.url))
    run = unique_id("S")[:6]
    pending: asyncio.Queue[str] = asyncio.Queue()
    for i in range(TOTAL):
        pending.put_nowait(f"{run}{i}")
    settled: list[str] = []
    deadline = time.monotonic() + 120

    async def client(session: aiohttp.ClientSession) -> None:
        while not pending.empty():
            external_id = pending.get_nowait()
            await ledger.submit_until_settled(
                session, crash_ingest.url, external_id, deadline=deadline
            )
            settled.append(external_id)

    unsettled_at_kill: list[int] = []

    async def killer() -> None:
        for n in range(1, KILLS + 1):
            await wait_for(
                lambda n=n: len(settled) >= n * TOTAL // (KILLS + 1),
                timeout=60,
                what=f"progress before kill {n}",
            )
            crash_ingest.kill()
            unsettled_at_kill.append(TOTAL - len(settled))
            crash_ingest.start()  # same port: the clients' resends find it again
            await asyncio.to_thread(crash_ingest.wait_ready, 60)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(killer(), *(client(session) for _ in range(CLIENTS)))
    took = time.monotonic() - started
    assert len(unsettled_at_kill) == KILLS and all(n > 0 for n in unsettled_at_kill)
    unanswered = sum(codes.count(NO_ANSWER) for codes in ledger.answers.values())
    assert unanswered > 0, "no request was cut by a kill: the test proves nothing"

    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:

        async def all_stored() -> dict[str, int] | None:
            stored = await stored_by_external_id(conn, ledger.tenant.database_id)
            return stored if len(stored) >= TOTAL else None

        # One tenant's records share a partition, consumed in order: once every ExternalID is
        # there, so is anything produced before the last of them (a second copy included).
        stored = await wait_for(all_stored, timeout=60, interval=0.2, what="every record stored")
        ledger.check_stored(stored)
    finally:
        await conn.close()
    assert stored.keys() == set(ledger.answers)
    duplicates = len(ledger.told("50421") - ledger.told("0"))
    print(
        f"sigkill: {TOTAL} records, {KILLS} kills, {took:.1f}s, {unanswered} requests cut, "
        f"{duplicates} records settled by 50421"
    )

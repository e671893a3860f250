"""SIGTERM under load (issue 12 item 6): the rater, then the notifier, then ingest are each
sent SIGTERM while 600 CDRs stream through the three real processes, and started again, as a
rolling update does. Each exits within its grace period, having finished what it held (the
notifier leaves no delivery leased); the PBX side retries what was never answered; at the end
every CDR is stored exactly once and reached the CRM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import asyncpg
import orjson
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.helpers import (
    ADMIN_TOKEN,
    Receiver,
    copies_by_external_id,
    create_tenant,
    running,
    submit_all,
    wait_for,
    wait_stored,
)

pytestmark = pytest.mark.slow

NAMESPACE = "gshut."
DATABASE = "gshut"
GRACE = 5.0
TOTAL = 600
ENV = {
    "CDR_TOPIC_NAMESPACE": NAMESPACE,
    "CDR_RATER_GROUP": "gshut-rater",
    "CDR_NOTIFIER_GROUP": "gshut-notifier",
    "CDR_SHUTDOWN_GRACE_SECONDS": str(GRACE),
    "CDR_PUSH_TIMEOUT": "2",
    "CDR_RETRY_BASE_SECONDS": "0.1",
    "CDR_RETRY_MAX_SECONDS": "1",
}
# What the supervisor logs when a loop did not finish within the grace and was cancelled.
CANCELLED = "still busy after"


@pytest.fixture(scope="module")
def procs(infra: Infra) -> Iterator[dict[str, ServiceProcess]]:
    with infra.own_database(DATABASE) as url:
        infra.create_topics(NAMESPACE)
        env = infra.env(**ENV, CDR_DATABASE_URL=url)
        made = {
            name: ServiceProcess(name, free_port(), env, log_path=infra.logs / f"gshut-{name}.log")
            for name in ("ingest", "rater", "notifier")
        }
        with running(made.values()):
            yield made


async def _terminate(
    proc: ServiceProcess, while_down: Callable[[], Awaitable[None]] | None = None
) -> float:
    """SIGTERM, then the seconds until the process was gone; `while_down` runs, and the
    process is started again, ready."""
    assert proc.proc is not None
    began = time.monotonic()
    proc.proc.terminate()
    await asyncio.to_thread(proc.proc.wait, 2 * GRACE + 10)
    took = time.monotonic() - began
    if while_down is not None:
        await while_down()
    proc.start()
    await asyncio.to_thread(proc.wait_ready, 90)
    return took


async def test_sigterm_under_load_loses_nothing_and_stores_nothing_twice(
    infra: Infra, procs: dict[str, ServiceProcess]
) -> None:
    slow = asyncio.Event()  # set while the notifier gets its SIGTERM: pushes held 1 s
    receiver = Receiver(delay=lambda n: 1.0 if slow.is_set() else 0.01)
    await receiver.start()
    db = await asyncpg.connect(asyncpg_dsn(infra.pg.url(DATABASE)))
    try:
        tenant = await create_tenant(procs["rater"].url)
        async with aiohttp.ClientSession() as session:
            async with session.put(
                f"{procs['notifier'].url}/v1/admin/tenants/{tenant.database_id}/subscriptions/crm",
                json={"url": receiver.url, "format": "json"},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
        answered: dict[str, str] = {}
        sending = asyncio.create_task(
            submit_all(procs["ingest"].url, tenant, TOTAL, prefix="g", retry=True, answers=answered)
        )
        took: dict[str, float] = {}
        leased: list[int] = []

        async def count_leased() -> None:
            leased.append(
                await db.fetchval(
                    "SELECT count(*) FROM delivery WHERE status = 'pending'"
                    " AND locked_until > now()"
                )
            )
            slow.clear()

        for name, after in (("rater", 100), ("notifier", 250), ("ingest", 400)):
            await wait_for(lambda n=after: len(answered) >= n, timeout=60, what=f"{after} sent")
            if name != "notifier":
                took[name] = await _terminate(procs[name])
                continue
            slow.set()
            sent = len(receiver.requests)
            await wait_for(
                lambda n=sent: len(receiver.requests) >= n + 2, timeout=30, what="pushes under way"
            )
            took[name] = await _terminate(procs[name], count_leased)
        # The pushes under way were finished and recorded, the claimed rest handed back: the
        # notifier left nothing leased (killed, it leaves leases of 3 push timeouts + 10 s).
        assert leased == [0], f"{leased[0]} deliveries left leased by the stopped notifier"
        await asyncio.wait_for(sending, timeout=120)

        await wait_stored(db, tenant.database_id, TOTAL)
        copies = await copies_by_external_id(db, tenant.database_id)
        assert set(copies) == set(answered)
        assert set(answered.values()) <= {"0", "50421"}, set(answered.values())
        assert all(n == 1 for n in copies.values()), "a CDR was stored twice"

        def pushed() -> set[str]:
            return {orjson.loads(body)["external_id"] for _, body in receiver.requests}

        await wait_for(lambda: len(pushed()) >= TOTAL, timeout=60, what="every CDR pushed")
        assert pushed() == set(answered)
    finally:
        await db.close()
        await receiver.stop()

    for name, seconds in took.items():
        # HTTP drain plus loop drain, each within the grace; a process that needed its
        # SIGKILL would have taken 2 x GRACE + 10 s and failed the wait above.
        assert seconds < 2 * GRACE + 3, f"{name} took {seconds:.1f} s to exit after SIGTERM"
        log = (infra.logs / f"gshut-{name}.log").read_text(errors="replace")
        assert CANCELLED not in log, f"{name} cancelled a loop that did not drain in time"
    print(f"\nexit after SIGTERM: {', '.join(f'{k} {v:.1f} s' for k, v in took.items())}")

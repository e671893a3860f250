"""Test helpers: waiting on conditions with deadlines (never bare sleeps), tenants, receivers."""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
import uuid
import xmlrpc.client
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp
import httpx
import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cdrflow_dev.processes import ServiceProcess

T = TypeVar("T")

ADMIN_TOKEN = "test-admin-token"

DECK_CSV = """prefix,destination,rate,increment,initial_increment,connect_fee
1,USA and Canada,0.0200,60,60,0
1613,Canada - 613 Ottawa,0.0150,60,60,0
1418,Canada - 418 Quebec City,0.015,60,60,0
"""
ROUTE_CSV = """prefix,destination,rate,increment
1418,Quebec termination,0.0052,6
1613,Ottawa termination,0.0052,6
"""


async def wait_for(
    probe: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` (sync or async) until it returns something truthy; fail with `what` at
    the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def wait_listening(url: str, *, timeout: float = 60) -> None:
    """Until the process at `url` answers /healthz (it may not be ready: that is the point)."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def up() -> bool:
            try:
                return (await client.get(f"{url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, timeout=timeout, what=f"{url} to listen")


def uuid7_at(at: datetime, rand: random.Random | None = None) -> uuid.UUID:
    """A UUIDv7 of the millisecond `at`, as ingest gives a CDR it accepts then (`cdr` is
    partitioned by it): random bits from `rand` (reproducible) or the system's."""
    rand = rand or random.SystemRandom()
    ms = int(at.timestamp() * 1000)
    bits = (ms << 80) | (0x7 << 76) | (rand.getrandbits(12) << 64) | (0b10 << 62)
    return uuid.UUID(int=bits | rand.getrandbits(62))


def unique_id(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


@dataclass
class Tenant:
    database_id: str
    account: str
    password: str
    package: str = "pkg"
    route: str = "rt"

    @property
    def login(self) -> str:
        return f"{self.database_id}/{self.account}"

    def submit_params(self, **fields: Any) -> dict[str, str]:
        params = {
            "DatabaseID": self.database_id,
            "APIAccountID": self.account,
            "APIPassword": self.password,
            "OriginatingNumber": "100",
            "DestinationNumber": "16138220000",
            "Duration": "90",
        }
        params.update({k: str(v) for k, v in fields.items()})
        return params


async def create_tenant(
    rater: str | httpx.AsyncClient, *, timezone: str = "UTC", daily_limit: int | None = None
) -> Tenant:
    """A fresh tenant (own DatabaseID) with an account, a package+route deck, extension 100.

    `rater` is the rater's URL, or a client already pointed at it (the in-process tier). The
    account has no daily limit unless `daily_limit` is given (streams of thousands are tested).
    """
    tenant = Tenant(unique_id("DB"), "ACC", "pw-" + uuid.uuid4().hex[:8])
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    if isinstance(rater, httpx.AsyncClient):
        await _configure_tenant(rater, "", headers, tenant, timezone, daily_limit)
    else:
        async with httpx.AsyncClient(timeout=30) as client:
            await _configure_tenant(client, rater, headers, tenant, timezone, daily_limit)
    return tenant


async def _configure_tenant(
    client: httpx.AsyncClient,
    rater_url: str,
    headers: dict[str, str],
    tenant: Tenant,
    timezone: str,
    daily_limit: int | None,
) -> None:
    base = f"{rater_url}/v1/admin/tenants/{tenant.database_id}"
    steps: list[tuple[str, Any]] = [
        ("", {"name": "test", "timezone": timezone, "country": "US"}),
        (f"/routes/{tenant.route}", {"name": "route"}),
        (f"/packages/{tenant.package}", {"name": "pkg", "route": tenant.route}),
        (
            f"/api-accounts/{tenant.account}",
            {"password": tenant.password, "daily_limit": daily_limit},
        ),
        ("/extensions/100", {"package": tenant.package, "account": "100000_VoIP"}),
    ]
    for path, body in steps:
        (await client.put(base + path, json=body, headers=headers)).raise_for_status()
    for path, csv in (
        (f"/packages/{tenant.package}/rates", DECK_CSV),
        (f"/routes/{tenant.route}/rates", ROUTE_CSV),
    ):
        resp = await client.put(
            base + path, content=csv, headers={**headers, "content-type": "text/csv"}
        )
        resp.raise_for_status()


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification by the `standardwebhooks` package, not by our code.

    It also refuses a timestamp more than five minutes from now, as receivers do.
    """
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


@dataclass
class Receiver:
    """A CRM on loopback: records every request (and when it came: `arrivals`, `answered`,
    wall-clock seconds; `spans`: each request's (arrival, answer) in monotonic seconds, in
    the order of `requests`, the answer infinite while it is pending); waits `delay(n)`
    seconds, then answers what `reply(n)` says."""

    port: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    reply: Callable[[int], tuple[int, str, dict[str, str]]] = lambda n: (
        200,
        '{"Err":0,"Errdesc":"OK"}',
        {"content-type": "application/json"},
    )
    delay: Callable[[int], float] = lambda n: 0.0
    arrivals: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.arrivals.append(time.time())
            self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
            arrived = time.monotonic()
            self.spans.append((arrived, math.inf))
            n = len(self.requests)
            status, text, headers = self.reply(n)
            if pause := self.delay(n):
                await asyncio.sleep(pause)  # a slow CRM, not a wait for a condition
            self.answered.append(time.time())
            self.spans[n - 1] = (arrived, time.monotonic())
            return web.Response(status=status, text=text, headers=headers)

        app = web.Application()
        app.router.add_post("/hook", handle)
        # A stop does not wait out a CRM told to hang: its handlers are cancelled after 1 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def decode_push(fmt: str, body: bytes) -> dict[str, Any]:
    """A push body back into its fields: JSON object, form (one value per name) or XML-RPC
    struct (the one parameter of the methodCall)."""
    if fmt == "json":
        return dict(orjson.loads(body))
    if fmt == "form":
        return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    params, _method = xmlrpc.client.loads(body.decode())
    return dict(params[0])


@contextmanager
def running(procs: Iterable[ServiceProcess], ready_timeout: float = 90) -> Iterator[None]:
    """Start every process, then wait until each is ready; stop them all when the block
    ends (or when one never gets ready)."""
    procs = list(procs)
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready(ready_timeout)
        yield
    finally:
        for proc in procs:
            proc.stop()


async def submit_all(
    ingest_url: str,
    tenant: Tenant,
    count: int,
    *,
    prefix: str,
    retry: bool = False,
    concurrency: int = 16,
    answers: dict[str, str] | None = None,
    **fields: str,
) -> dict[str, str]:
    """`count` CDRs by the compat GET, `concurrency` at a time, ExternalIDs `prefix` + n: the
    answer code of each, also filled into `answers` as they come. With `retry`, as a PBX
    does, what was not answered (a refused or dropped connection, 50503) is sent again until
    it is."""
    answers = {} if answers is None else answers
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def send(session: aiohttp.ClientSession, params: dict[str, str]) -> str | None:
        try:
            async with session.get(f"{ingest_url}/api_submitcdr.aspx", params=params) as resp:
                code = await resp.text()
        except aiohttp.ClientError:
            if not retry:
                raise
            return None
        return None if retry and code == "50503" else code

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            params = tenant.submit_params(
                ExternalID=f"{prefix}{i}", Duration=str(30 + i % 200), **fields
            )
            while True:
                code = await send(session, params)
                if code is not None:
                    break
                await asyncio.sleep(0.05)  # ingest restarting or busy: the PBX tries again
            answers[f"{prefix}{i}"] = code

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return answers


async def stored_count(conn: Any, database_id: str) -> int:
    """CDR rows of a tenant, every version counted (asyncpg connection)."""
    return int(await conn.fetchval("SELECT count(*) FROM cdr WHERE database_id = $1", database_id))


async def wait_stored(conn: Any, database_id: str, n: int, *, timeout: float = 60) -> None:
    """Until the tenant has at least `n` CDR rows."""

    async def enough() -> bool:
        return await stored_count(conn, database_id) >= n

    await wait_for(enough, timeout=timeout, what=f"{n} records of {database_id} stored")


async def copies_by_external_id(conn: Any, database_id: str) -> dict[str, int]:
    """How many CDR rows each ExternalID of a tenant has (1 each: stored exactly once)."""
    rows = await conn.fetch(
        "SELECT external_id, count(*) AS n FROM cdr WHERE database_id = $1 GROUP BY 1",
        database_id,
    )
    return {r["external_id"]: r["n"] for r in rows}

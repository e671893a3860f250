"""In-process tier: the three apps run inside the test process, each built by its
`create_app(Settings(...))`, its lifespan run by asgi-lifespan's LifespanManager and reached
through `httpx.AsyncClient(transport=ASGITransport(app))`, against the session's real embedded
PostgreSQL and Tansu (the `infra` fixture). Ingest -> rater -> notifier run in one event loop:
a record submitted to the ingest app is produced to Tansu, consumed and priced by the rater
app, and pushed by the notifier app to a real receiver on loopback, with no uvicorn process.

Isolation from the subprocess tier, chosen on purpose rather than shared:
- Own topic namespace and consumer groups (`inproc.` for the shared pipeline, as
  tests/integration/test_crash.py does with `crash.`): sharing `cdr-rater` with the subprocess
  rater would split the partitions between the two and rebalance every time either starts or
  stops, slowing both tiers.
- Own database (a copy of a migrated template on the same server). Topics are not enough: every
  notifier's dispatcher claims due deliveries from the whole `delivery` table, so a subprocess
  notifier (2 s retry base, private webhooks allowed) would push this tier's deliveries with its
  own settings, and an in-process notifier with short retries would push the other tier's.

`pipeline` (package scope) is the shared one: private webhooks allowed, retries in tenths of a
second so retry, dead and Retry-After tests take seconds. Tests isolate from each other by
tenant. A test that needs other notifier settings builds its own with `pipeline_factory`, which
gives it a fresh database and namespace, so no other dispatcher can take its deliveries.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from cdr_ingest.app import create_app as ingest_app
from cdr_ingest.settings import IngestSettings
from cdr_notifier.app import create_app as notifier_app
from cdr_notifier.settings import NotifierSettings
from cdr_rater.app import create_app as rater_app
from cdr_rater.settings import RaterSettings
from cdrmodel.db import asyncpg_dsn
from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
from cdrmodel.migrate import upgrade
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, create_tenant, wait_for

TEMPLATE_DB = "inproc_template"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}

# Short enough that three failed attempts take well under a second, long enough that a
# Retry-After of one or two seconds is clearly what decided the wait.
FAST_RETRIES: dict[str, Any] = {
    "allow_private_webhooks": True,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 10.0,
    "push_timeout": 5.0,
}


@dataclass
class Pipeline:
    """Clients of the three in-process apps, and the database they share."""

    ingest: httpx.AsyncClient
    rater: httpx.AsyncClient
    notifier: httpx.AsyncClient
    apps: dict[str, FastAPI]
    database_url: str
    namespace: str
    # The settings every app of this pipeline shares: a test adds an app of its own with them.
    common: dict[str, Any]
    # What each app's lifespan yielded (e.g. states["rater"]["rater"]: its RaterState).
    states: dict[str, dict[str, Any]]

    async def tenant(self, *, timezone: str = "UTC") -> Tenant:
        return await create_tenant(self.rater, timezone=timezone)

    async def settled_tenant(self, *, timezone: str = "UTC") -> Tenant:
        """A new tenant once the rater's re-rating pass over its configuration is done. The
        pass prices the tenant's unrated records, and a second look a few seconds later
        those rated in the minute before it: a test that inserts unrated rows itself takes
        this tenant and gives its rows a `rated_at` older than that minute."""
        tenant = await self.tenant(timezone=timezone)
        await self.settled(tenant)
        return tenant

    async def settled(self, tenant: Tenant) -> None:
        """Until the re-rating pass over the tenant's latest configuration change is done
        (after each change made to a `settled_tenant`, before inserting rows)."""

        async def rerated() -> bool:
            (row,) = await self.sql(
                "SELECT rerated_version >= config_version FROM tenant WHERE database_id = $1",
                tenant.database_id,
            )
            return bool(row[0])

        await wait_for(rerated, timeout=30, what=f"the re-rating pass over {tenant.database_id}")

    async def submit(self, tenant: Tenant, **fields: object) -> str:
        resp = await self.ingest.get("/api_submitcdr.aspx", params=tenant.submit_params(**fields))
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return resp.text

    async def subscribe(
        self, tenant: Tenant, url: str, subscription: str = "crm", **extra: object
    ) -> dict[str, Any]:
        resp = await self.notifier.put(
            f"/v1/admin/tenants/{tenant.database_id}/subscriptions/{subscription}",
            json={"url": url, "format": "json", **extra},
            headers=ADMIN,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def deliveries(
        self, tenant: Tenant, subscription: str = "crm", status: str | None = None
    ) -> list[dict[str, Any]]:
        resp = await self.notifier.get(
            f"/v1/admin/tenants/{tenant.database_id}/subscriptions/{subscription}/deliveries",
            params={"status": status} if status else None,
            headers=ADMIN,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()["deliveries"]  # type: ignore[no-any-return]

    async def stored(self, tenant: Tenant, **params: object) -> list[dict[str, Any]]:
        resp = await self.notifier.get(
            "/v1/cdrs", params=params, auth=(tenant.login, tenant.password)
        )
        assert resp.status_code == 200, resp.text
        return resp.json()["cdrs"]  # type: ignore[no-any-return]

    async def wait_stored(self, tenant: Tenant, n: int, **params: object) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]]:
            found = await self.stored(tenant, **params)
            return found if len(found) >= n else []

        return await wait_for(enough, timeout=30, what=f"{n} stored records")

    async def sql(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def inproc_template(infra: Infra) -> Iterator[str]:
    """A migrated database that every in-process pipeline's database is copied from."""
    asyncio.run(infra.admin_sql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"'))
    asyncio.run(infra.admin_sql(f'CREATE DATABASE "{TEMPLATE_DB}"'))
    upgrade(infra.pg.url(TEMPLATE_DB))
    yield TEMPLATE_DB


@asynccontextmanager
async def run_pipeline(
    infra: Infra, template: str, name: str, **notifier: Any
) -> AsyncIterator[Pipeline]:
    """Ingest, rater and notifier apps on database `name` (copied from `template`) and the
    topic namespace `name.`, each with its lifespan running, until the block ends."""
    namespace = f"{name}."
    await infra.admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await ensure_topics(
        infra.bootstrap, [topic_name(t, namespace) for t in ALL_TOPICS], partitions=2
    )
    common: dict[str, Any] = {
        "database_url": infra.pg.url(name),
        "kafka_bootstrap": infra.bootstrap,
        "topic_namespace": namespace,
        "admin_token": ADMIN_TOKEN,
        "db_pool_size": 4,
    }
    apps = {
        "ingest": ingest_app(IngestSettings(**common)),
        "rater": rater_app(RaterSettings(**common, rater_group=f"{namespace}rater")),
        "notifier": notifier_app(
            NotifierSettings(
                **common, notifier_group=f"{namespace}notifier", **{**FAST_RETRIES, **notifier}
            )
        ),
    }
    try:
        async with AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}
            states: dict[str, dict[str, Any]] = {}
            for service, app in apps.items():
                manager = await stack.enter_async_context(
                    LifespanManager(app, startup_timeout=60, shutdown_timeout=60)
                )
                states[service] = lifespan_state(manager)
                clients[service] = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=manager.app),
                        base_url=f"http://{service}.inprocess",
                        timeout=30,
                    )
                )
            for service, client in clients.items():

                async def ready(client: httpx.AsyncClient = client) -> bool:
                    return (await client.get("/readyz")).status_code == 200

                await wait_for(ready, timeout=60, what=f"in-process {service} ready")
            yield Pipeline(
                ingest=clients["ingest"],
                rater=clients["rater"],
                notifier=clients["notifier"],
                apps=apps,
                database_url=infra.pg.url(name),
                namespace=namespace,
                common=common,
                states=states,
            )
    finally:
        await infra.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def lifespan_state(manager: LifespanManager) -> dict[str, Any]:
    """The state the app's lifespan yielded: asgi-lifespan keeps it for the requests it
    hands the app (it has no public accessor)."""
    return manager._state


PipelineFactory = Callable[..., AbstractAsyncContextManager[Pipeline]]


@pytest.fixture(scope="package")
async def pipeline(infra: Infra, inproc_template: str) -> AsyncIterator[Pipeline]:
    async with run_pipeline(infra, inproc_template, "inproc") as shared:
        yield shared


@pytest.fixture
def pipeline_factory(infra: Infra, inproc_template: str) -> PipelineFactory:
    """`async with pipeline_factory(allow_private_webhooks=False) as p:` a pipeline of its own."""

    def build(**notifier: Any) -> AbstractAsyncContextManager[Pipeline]:
        return run_pipeline(infra, inproc_template, f"inproc_{uuid.uuid4().hex[:8]}", **notifier)

    return build


@pytest.fixture
async def tenant(pipeline: Pipeline) -> Tenant:
    """A fresh tenant on the shared in-process pipeline (shadows the subprocess one)."""
    return await pipeline.tenant()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A CRM on loopback that answers `{"Err":0}`; set `reply` / `delay` to change that."""
    crm = Receiver()
    await crm.start()
    yield crm
    await crm.stop()

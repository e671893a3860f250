"""Helpers of the batch-route tests: posting as an API account, and an ingest app of a test's
own (on the shared pipeline's database and topics) whose live state the test can reach."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from cdr_ingest.app import create_app
from cdr_ingest.deps import IngestState
from cdr_ingest.settings import IngestSettings
from cdrmodel.events import CdrSubmitted
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, Tenant, wait_for
from tests.inprocess.conftest import Pipeline

NDJSON = {"content-type": "application/x-ndjson"}


def record(n: int | str = 0, **fields: Any) -> dict[str, Any]:
    """A valid native record to extension 100's deck (Ottawa)."""
    return {
        "originating_number": "100",
        "destination_number": f"1613822{int(n):04d}" if str(n).isdigit() else "16138220000",
        "duration": 60,
        **fields,
    }


async def post(
    client: httpx.AsyncClient,
    tenant: Tenant,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        path,
        json=body if content is None else None,
        content=content,
        headers=headers,
        params=params,
        auth=(tenant.login, tenant.password),
    )


def codes(resp: httpx.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert [r["index"] for r in answer["results"]] == list(range(len(answer["results"])))
    assert answer["accepted"] == sum(r["code"] == 0 for r in answer["results"])
    return [r["code"] for r in answer["results"]]


@dataclass
class CountingSink:
    """The real Publisher, counting produce round trips and the events each carried."""

    inner: Any
    calls: list[int] = field(default_factory=list)

    async def publish_many(self, events: Sequence[CdrSubmitted]) -> list[bool]:
        self.calls.append(len(events))
        result: list[bool] = await self.inner.publish_many(events)
        return result


@dataclass
class OwnIngest:
    client: httpx.AsyncClient
    states: list[IngestState]

    @property
    def state(self) -> IngestState:
        assert self.states, "no request has reached the app yet"
        return self.states[0]


@asynccontextmanager
async def own_ingest(
    infra: Infra, pipeline: Pipeline, *, ready: bool = True, **settings: Any
) -> AsyncIterator[OwnIngest]:
    """An ingest app of the test's own; `settings` override the pipeline's (a closed port as
    the broker, say). Its IngestState is captured from the first request's scope."""
    common: dict[str, Any] = {
        "database_url": pipeline.database_url,
        "kafka_bootstrap": infra.bootstrap,
        "topic_namespace": pipeline.namespace,
        "admin_token": ADMIN_TOKEN,
        "db_pool_size": 2,
    }
    app = create_app(IngestSettings(**{**common, **settings}))
    states: list[IngestState] = []

    async def capturing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not states:
            states.append(scope["state"]["ingest"])
        await app(scope, receive, send)

    async with LifespanManager(capturing, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://own-ingest", timeout=60
        ) as client:
            if ready:

                async def is_ready() -> bool:
                    return (await client.get("/readyz")).status_code == 200

                await wait_for(is_ready, timeout=60, what="own ingest ready")
            else:
                await client.get("/healthz")
            yield OwnIngest(client, states)

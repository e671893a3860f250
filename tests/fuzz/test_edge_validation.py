"""The three 500s the fuzzer found in the rater admin API are now 4xx answers with a message.

Plain httpx against the in-process rater (its real lifespan, the session's PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from cdr_rater.app import create_app
from cdr_rater.settings import RaterSettings
from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
async def rater(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    names = [topic_name(t, "edge.") for t in ALL_TOPICS]
    await ensure_topics(infra.bootstrap, names, partitions=1)
    settings = RaterSettings(
        database_url=infra.database_url,
        kafka_bootstrap=infra.bootstrap,
        admin_token=ADMIN_TOKEN,
        topic_namespace="edge.",
        rater_group="edge-rater",
        db_pool_size=2,
    )
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            # manager.app carries the lifespan's state into each request (request.state)
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://rater",
            headers=AUTH,
        ) as client,
    ):
        yield client


@pytest.fixture
async def tenant_url(rater: httpx.AsyncClient) -> str:
    url = f"/v1/admin/tenants/EDGE{uuid.uuid4().hex[:8].upper()}"
    (await rater.put(url, json={"name": "edge"})).raise_for_status()
    (await rater.put(f"{url}/packages/pkg", json={"name": "pkg"})).raise_for_status()
    return url


async def test_nul_in_the_rates_query_is_422_naming_the_parameter(
    rater: httpx.AsyncClient, tenant_url: str
) -> None:
    resp = await rater.get(f"{tenant_url}/packages/pkg/rates", params={"query": "Can\x00ada"})
    assert resp.status_code == 422
    assert resp.json()["message"].startswith("query:")
    assert "control characters" in resp.json()["message"]


async def test_nul_in_a_body_string_is_422_naming_the_field(
    rater: httpx.AsyncClient, tenant_url: str
) -> None:
    resp = await rater.put(f"{tenant_url}/packages/pkg2", json={"route": "\u0000rt"})
    assert resp.status_code == 422
    assert resp.json()["message"].startswith("route:")
    # Nothing was stored: a deck upload finds no such package.
    assert (await rater.put(f"{tenant_url}/packages/pkg2/rates", json=[])).status_code == 404


async def test_daily_limit_beyond_postgresql_integer_is_422_naming_the_field(
    rater: httpx.AsyncClient, tenant_url: str
) -> None:
    resp = await rater.put(
        f"{tenant_url}/api-accounts/acc", json={"password": "pw", "daily_limit": 5793944759}
    )
    assert resp.status_code == 422
    assert resp.json()["message"].startswith("daily_limit:")
    largest = await rater.put(
        f"{tenant_url}/api-accounts/acc", json={"password": "pw", "daily_limit": 2**31 - 1}
    )
    assert largest.status_code == 200 and largest.json()["daily_limit"] == 2**31 - 1


async def test_control_characters_in_a_path_id_are_422(
    rater: httpx.AsyncClient, tenant_url: str
) -> None:
    resp = await rater.put(f"{tenant_url}/routes/r%00t", json={"name": "x"})
    assert resp.status_code == 422
    assert resp.json()["message"].startswith("route_id:")

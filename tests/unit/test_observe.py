"""Every request: a request id (kept from X-Request-ID when sane) in its log context and its
answer, and one observation under its route template, method and code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from structlog.contextvars import bind_contextvars, get_contextvars

from cdrmodel.observe import UNMATCHED, bind_path_ids
from cdrmodel.web import build_app

router = APIRouter()
seen: list[dict[str, Any]] = []


@router.get("/v1/things/{database_id}/items/{cdr_id}")
async def item(database_id: str, cdr_id: str) -> dict[str, str]:
    bind_path_ids({"database_id": database_id, "cdr_id": cdr_id})
    seen.append(get_contextvars())
    return {"ok": "yes"}


@router.post("/v1/things/{database_id}")
async def authenticated(database_id: str) -> dict[str, str]:
    bind_contextvars(tenant=database_id)  # what PrincipalDirectory.authenticate does
    seen.append(get_contextvars())
    return {}


@router.get("/v1/broken")
async def broken() -> None:
    raise RuntimeError("a bug")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build_app(title="t", summary="t", lifespan=_lifespan, routers=[router])


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        yield c
    seen.clear()


def requests(route: str, method: str, code: int) -> float:
    value = REGISTRY.get_sample_value(
        "cdrflow_http_request_duration_seconds_count",
        {"route": route, "method": method, "code": str(code)},
    )
    return value or 0.0


async def test_requests_are_counted_by_route_template_not_path(client: httpx.AsyncClient) -> None:
    template = "/v1/things/{database_id}/items/{cdr_id}"
    before = requests(template, "GET", 200)
    for n in range(3):
        assert (await client.get(f"/v1/things/DB{n}/items/{n}")).status_code == 200
    assert requests(template, "GET", 200) == before + 3
    assert requests("/v1/things/DB0/items/0", "GET", 200) == 0


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    before = requests(UNMATCHED, "GET", 404)
    await client.get("/wp-login.php")
    await client.get("/.env")
    assert requests(UNMATCHED, "GET", 404) == before + 2


async def test_a_route_that_raises_is_counted_as_its_500(client: httpx.AsyncClient) -> None:
    before = requests("/v1/broken", "GET", 500)
    assert (await client.get("/v1/broken")).status_code == 500
    assert requests("/v1/broken", "GET", 500) == before + 1


async def test_a_request_id_is_made_bound_and_answered(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/things/DB1/items/c1")
    rid = resp.headers["x-request-id"]
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert seen[-1] == {"request_id": rid, "tenant": "DB1", "cdr_id": "c1"}
    other = (await client.get("/v1/things/DB1/items/c1")).headers["x-request-id"]
    assert other != rid


@pytest.mark.parametrize("given", ["abc-123", "7f1c2d3e.4:edge_1", "A" * 64])
async def test_a_sane_incoming_request_id_is_kept(client: httpx.AsyncClient, given: str) -> None:
    resp = await client.post("/v1/things/DB2", headers={"x-request-id": given})
    assert resp.headers["x-request-id"] == given
    assert seen[-1]["request_id"] == given


@pytest.mark.parametrize("given", ["", "A" * 65, "has space", 'quote"d', "line\tbreak", "é"])
async def test_an_odd_incoming_request_id_is_replaced(
    client: httpx.AsyncClient, given: str
) -> None:
    resp = await client.post("/v1/things/DB2", headers={b"x-request-id": given.encode()})
    assert resp.headers["x-request-id"] != given
    assert len(resp.headers["x-request-id"]) == 16


async def test_the_log_context_ends_with_the_request(client: httpx.AsyncClient) -> None:
    await client.post("/v1/things/DB3")
    assert seen[-1]["tenant"] == "DB3"
    # The in-process transport runs the app in this task: nothing of it may stay behind.
    assert not {"request_id", "tenant", "cdr_id"} & get_contextvars().keys()

"""The rater's admin API: bearer token, atomic deck replacement, clear 4xx errors."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack
from tests.helpers import ADMIN_TOKEN, Tenant

pytestmark = pytest.mark.slow

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _deck_url(stack: Stack, tenant: Tenant) -> str:
    return (
        f"{stack.rater.url}/v1/admin/tenants/{tenant.database_id}/packages/{tenant.package}/rates"
    )


async def test_admin_needs_the_bearer_token(stack: Stack, tenant: Tenant) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        none = await client.put(f"{stack.rater.url}/v1/admin/tenants/X", json={})
        wrong = await client.put(
            f"{stack.rater.url}/v1/admin/tenants/X",
            json={},
            headers={"authorization": "Bearer nope-nope"},
        )
    assert none.status_code == 401 and wrong.status_code == 401
    assert "message" in none.json()


async def test_malformed_csv_names_the_line_and_replaces_nothing(
    stack: Stack, tenant: Tenant
) -> None:
    bad = "prefix,rate,increment\n44,0.05,60\n33,lots,60\n49,0.04,0\n"
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        before = (await client.get(_deck_url(stack, tenant))).json()["rates"]
        resp = await client.put(
            _deck_url(stack, tenant), content=bad, headers={"content-type": "text/csv"}
        )
        after = (await client.get(_deck_url(stack, tenant))).json()["rates"]
    assert resp.status_code == 422
    body = resp.json()
    assert body["message"].startswith("line 3:") and "rate" in body["message"]
    assert any(d.startswith("line 4:") for d in body["detail"])
    assert after == before and len(before) == 3


async def test_json_deck_replaces_atomically_and_query_finds_lines(
    stack: Stack, tenant: Tenant
) -> None:
    deck = [
        {"prefix": "1418", "destination": "Canada - 418 Quebec City", "rate": "0.015"},
        {"prefix": "44", "destination": "United Kingdom", "rate": "0.05", "increment": 1},
    ]
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        put = await client.put(_deck_url(stack, tenant), json=deck)
        assert put.status_code == 200 and put.json()["lines"] == 2
        found = await client.get(_deck_url(stack, tenant), params={"query": "Canada"})
        by_prefix = await client.get(_deck_url(stack, tenant), params={"query": "44"})
    assert [r["prefix"] for r in found.json()["rates"]] == ["1418"]
    assert [r["destination"] for r in by_prefix.json()["rates"]] == ["United Kingdom"]


async def test_unknown_tenant_and_bad_bodies_are_4xx(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        missing = await client.put(
            f"{stack.rater.url}/v1/admin/tenants/NOPE_DB/api-accounts/A", json={"password": "x"}
        )
        zone = await client.put(
            f"{stack.rater.url}/v1/admin/tenants/ZONE_DB", json={"timezone": "Mars/Olympus"}
        )
    assert missing.status_code == 404 and "NOPE_DB" in missing.json()["message"]
    assert zone.status_code == 422 and "time zone" in zone.json()["message"]

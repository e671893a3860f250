"""One call from a PBX to a CRM, through three real service processes (the thin end-to-end
check; retries, dead, replay, filters and tenant isolation run in process: tests/inprocess)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import orjson
import pytest

from tests.conftest import Stack
from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, verify_signature, wait_for

pytestmark = pytest.mark.slow


async def subscribe(stack: Stack, tenant: Tenant, url: str, **extra: object) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.put(
            f"{stack.notifier.url}/v1/admin/tenants/{tenant.database_id}/subscriptions/crm",
            json={"url": url, "format": "json", **extra},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_seed_sample_is_priced_and_pushed_with_a_valid_signature(
    stack: Stack, tenant: Tenant
) -> None:
    receiver = Receiver(delay=lambda n: 0.2)  # a CRM that takes 200 ms to answer
    await receiver.start()
    try:
        sub = await subscribe(stack, tenant, receiver.url)
        assert sub["secret"].startswith("whsec_")
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.get(
                f"{stack.ingest.url}/api_submitcdr.aspx",
                params=tenant.submit_params(
                    ExternalID="53453454.54", StartDateTime="2008-Jan-01 12:12:59"
                ),
            )
        assert (answer.status_code, answer.text) == (200, "0")
        assert answer.headers["content-type"].startswith("text/plain")

        await wait_for(lambda: receiver.requests, what="the push", timeout=60)
        headers, body = receiver.requests[0]
        assert verify_signature(sub["secret"], headers, body)
        assert headers["content-type"] == "application/json"
        record = orjson.loads(body)
        # 1613 at 0.015/min, 60 s increments: 90 s bills 120 s.
        assert record["total"] == "0.03000000"
        assert record["price"] == 3
        assert record["billed_seconds"] == 120
        assert record["cost"] == "0.00780000"  # route 0.0052/min, 6 s increments, 90 s
        assert Decimal(record["rate"]) == Decimal("0.015")
        assert record["ivruniqueid"] == "53453454.54"
        assert record["caller"] == "100" and record["target"] == "16138220000"
        assert record["start_time"] == "2008-01-01T12:12:59+00:00"
        assert record["time"] == 1199189579
        assert record["destination_name"] == "Canada - 613 Ottawa"
        assert record["rated"] is True and record["unrated_reason"] is None
        assert record["database_id"] == tenant.database_id

        # The attempt is recorded and the delivery is marked delivered.
        async def delivered() -> list:
            async with httpx.AsyncClient(timeout=30) as client:
                resp = await client.get(
                    f"{stack.notifier.url}/v1/admin/tenants/{tenant.database_id}"
                    "/subscriptions/crm/deliveries",
                    params={"status": "delivered"},
                    headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                )
            return resp.json()["deliveries"]

        deliveries = await wait_for(delivered, what="delivered status")
        assert deliveries[0]["cdr_id"] == record["cdr_id"]
        attempt = deliveries[0]["attempts"][0]
        assert attempt["http_status"] == 200 and attempt["error"] is None
        assert 200 <= attempt["latency_ms"] < 10_000  # the CRM's delay, under the push timeout
        assert deliveries[0]["webhook_id"] == headers["webhook-id"]
    finally:
        await receiver.stop()

"""Money through the real pipeline: free and tiny amounts as stored, listed and pushed, in
each push format, and currencies with 0 and 3 minor-unit places."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.kafka import SUBMITTED
from tests.conftest import Infra, Stack
from tests.helpers import (
    ADMIN_TOKEN,
    DECK_CSV,
    Receiver,
    Tenant,
    create_tenant,
    decode_push,
    verify_signature,
    wait_for,
)

pytestmark = pytest.mark.slow

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# 0.0000006 a minute in 1 s increments: a 1 s call costs exactly 0.00000001.
TINY_LINE = "1555,Tiny,0.0000006,1,1,0\n"
FORMATS = ("json", "form", "xmlrpc")


async def _admin_put(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        return await client.put(url, **kwargs)


async def _set_deck(stack: Stack, tenant: Tenant, csv: str) -> None:
    resp = await _admin_put(
        f"{stack.rater.url}/v1/admin/tenants/{tenant.database_id}/packages/{tenant.package}/rates",
        content=csv,
        headers={"content-type": "text/csv", **AUTH},
    )
    assert resp.status_code == 200, resp.text


async def _submit(stack: Stack, tenant: Tenant, **fields: object) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(
            f"{stack.ingest.url}/api_submitcdr.aspx", params=tenant.submit_params(**fields)
        )
    assert (answer.status_code, answer.text) == (200, "0")


async def _submit_busy(infra: Infra, tenant: Tenant, external_id: str) -> None:
    # The seed-000 endpoint cannot say BUSY; the rater's input topic can.
    event = CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id=tenant.database_id,
        api_account=tenant.account,
        received_at=datetime.now(UTC),
        originating_number="100",
        destination_number="16138220000",
        start_time=datetime.now(UTC),
        duration=42,
        disposition="BUSY",
        external_id=external_id,
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            SUBMITTED, event.model_dump_json().encode(), key=tenant.database_id.encode()
        )
    finally:
        await producer.stop()


async def _listed(stack: Stack, tenant: Tenant, count: int) -> dict[str, dict[str, Any]]:
    async def probe() -> dict[str, dict[str, Any]] | None:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.get(
                f"{stack.notifier.url}/v1/cdrs", auth=(tenant.login, tenant.password)
            )
        resp.raise_for_status()
        records = {r["external_id"]: r for r in resp.json()["cdrs"]}
        return records if len(records) >= count else None

    return await wait_for(probe, timeout=60, what=f"{count} records in /v1/cdrs")


async def test_free_and_tiny_amounts_are_fixed_point_in_the_list_and_every_push_format(
    infra: Infra, stack: Stack, tenant: Tenant
) -> None:
    await _set_deck(stack, tenant, DECK_CSV + TINY_LINE)
    receivers = {fmt: Receiver() for fmt in FORMATS}
    secrets: dict[str, str] = {}
    try:
        for fmt, receiver in receivers.items():
            await receiver.start()
            resp = await _admin_put(
                f"{stack.notifier.url}/v1/admin/tenants/{tenant.database_id}/subscriptions/{fmt}",
                json={"url": receiver.url, "format": fmt},
            )
            assert resp.status_code == 200, resp.text
            secrets[fmt] = resp.json()["secret"]

        await _submit(stack, tenant, ExternalID="unanswered", Duration=0)
        await _submit(stack, tenant, ExternalID="tiny", DestinationNumber="15551234567", Duration=1)
        await _submit_busy(infra, tenant, "busy")

        listed = await _listed(stack, tenant, 3)
        for free in ("unanswered", "busy"):
            record = listed[free]
            assert record["rated"] is True and record["call_billing"] == "free"
            # Route 1613 applies, billed 0 s: the stored NUMERIC zero (0E-8) renders in full.
            assert (record["total"], record["cost"], record["price"]) == (
                "0.00000000",
                "0.00000000",
                0,
            )
            assert record["rate"] == "0.01500000"
        assert listed["busy"]["disposition"] == "BUSY"
        tiny = listed["tiny"]
        assert (tiny["total"], tiny["rate"], tiny["cost"]) == ("0.00000001", "0.00000060", None)
        assert tiny["price"] == 0 and tiny["call_billing"] == "billed"

        for fmt, receiver in receivers.items():
            await wait_for(lambda r=receiver: len(r.requests) >= 3, timeout=60, what=f"{fmt}")
            pushed = {}
            for headers, body in receiver.requests:
                assert verify_signature(secrets[fmt], headers, body), fmt
                assert b"E-" not in body, body
                fields = decode_push(fmt, body)
                pushed[fields["external_id"]] = fields
            assert pushed["busy"]["total"] == pushed["unanswered"]["total"] == "0.00000000"
            assert pushed["busy"]["cost"] == "0.00000000"
            assert pushed["tiny"]["total"] == "0.00000001"
            assert pushed["tiny"]["rate"] == "0.00000060"
            assert pushed["tiny"]["price"] == ("0" if fmt == "form" else 0)
    finally:
        for receiver in receivers.values():
            await receiver.stop()


@pytest.mark.parametrize(
    ("currency", "rate", "total", "price"),
    [
        ("JPY", "150", "300.00000000", 300),  # 90 s bills 120 s: 150 x 2
        ("KWD", "0.61725", "1.23450000", 1235),  # 1234.5 fils, half-up
        ("USD", "0.61725", "1.23450000", 123),
    ],
)
async def test_price_is_in_the_currency_minor_unit(
    stack: Stack, currency: str, rate: str, total: str, price: int
) -> None:
    tenant = await create_tenant(stack.rater.url)
    resp = await _admin_put(
        f"{stack.rater.url}/v1/admin/tenants/{tenant.database_id}",
        json={"name": "test", "country": "US", "currency": currency},
    )
    assert resp.status_code == 200 and resp.json()["currency"] == currency
    await _set_deck(stack, tenant, f"prefix,destination,rate\n1613,Ottawa,{rate}\n")
    await _submit(stack, tenant, ExternalID="c1", Duration=90)
    record = (await _listed(stack, tenant, 1))["c1"]
    assert (record["currency"], record["total"], record["price"]) == (currency, total, price)


@pytest.mark.parametrize("currency", ["XYZ", "usd", "EURO"])
async def test_tenant_with_an_unknown_currency_is_refused(stack: Stack, currency: str) -> None:
    resp = await _admin_put(
        f"{stack.rater.url}/v1/admin/tenants/NOCUR{currency.upper()}",
        json={"name": "x", "currency": currency},
    )
    assert resp.status_code == 422, resp.text
    assert "currency" in resp.text

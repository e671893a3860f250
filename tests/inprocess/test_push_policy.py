"""Push targets must be public addresses unless CDR_ALLOW_PRIVATE_WEBHOOKS is set: checked
when a subscription is saved, and again at connect time by PublicResolver, so a name that
resolves to loopback later (DNS rebinding) still reaches nothing."""

from __future__ import annotations

import socket

import pytest

from cdr_notifier.urls import PublicResolver, check_url
from cdrmodel.errors import Unprocessable
from tests.helpers import ADMIN_TOKEN, Receiver, wait_for
from tests.inprocess.conftest import PipelineFactory

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",  # loopback
        "http://10.1.2.3/hook",  # private
        "http://192.168.0.10/hook",  # private
        "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "http://[fe80::1]/hook",  # IPv6 link-local
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6 of loopback
        "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped IPv6 of a private address
        "http://localhost/hook",  # a name that resolves to loopback
    ],
)
async def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(Unprocessable, match="not a public address"):
        await check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8/hook", "https://[2001:4860:4860::8888]/hook", "http://[::ffff:8.8.8.8]/"],
)
async def test_public_literals_are_accepted(url: str) -> None:
    await check_url(url, allow_private=False)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(Unprocessable, match="does not resolve"):
        await check_url("http://no-such-host.invalid/hook", allow_private=False)


async def test_resolver_drops_every_non_public_answer() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="only to non-public addresses"):
            await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
        with pytest.raises(OSError, match="only to non-public addresses"):
            await resolver.resolve("127.0.0.1", 80)
        (public,) = await resolver.resolve("8.8.8.8", 443)
        assert public["host"] == "8.8.8.8" and public["port"] == 443
    finally:
        await resolver.close()


async def test_a_loopback_receiver_is_never_reached_when_private_webhooks_are_off(
    pipeline_factory: PipelineFactory,
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        async with pipeline_factory(allow_private_webhooks=False) as pipeline:
            tenant = await pipeline.tenant()
            base = f"/v1/admin/tenants/{tenant.database_id}/subscriptions"
            # Saving is refused with a clear 422, for a literal and for a name.
            for url in (receiver.url, f"http://localhost:{receiver.port}/hook"):
                refused = await pipeline.notifier.put(
                    f"{base}/crm", json={"url": url}, headers=AUTH
                )
                assert refused.status_code == 422
                assert "not a public address" in refused.json()["message"]
            public = await pipeline.notifier.put(
                f"{base}/public",
                json={"url": "http://8.8.8.8/hook", "enabled": False},
                headers=AUTH,
            )
            assert public.status_code == 200
            # Subscriptions saved while the flag was on (or a name re-pointed at loopback since)
            # are refused again at push time: by check_url for a literal, by PublicResolver
            # at connect time for a name.
            await pipeline.sql(
                "INSERT INTO subscription (database_id, subscription_id, url, format, secret,"
                " filter, max_attempts) VALUES ($1, 'literal', $2, 'json', 'whsec_x', '{}', 1),"
                " ($1, 'name', $3, 'json', 'whsec_x', '{}', 1)",
                tenant.database_id,
                receiver.url,
                f"http://localhost:{receiver.port}/hook",
            )
            assert await pipeline.submit(tenant) == "0"
            for sub, why in (
                ("literal", "not a public address"),
                # aiohttp reports the resolver's refusal as a DNS failure, without its text.
                ("name", "ClientConnectorDNSError"),
            ):

                async def dead(sub: str = sub) -> list[dict]:
                    return await pipeline.deliveries(tenant, sub, status="dead")

                (delivery,) = await wait_for(dead, timeout=30, what=f"{sub} refused")
                (attempt,) = delivery["attempts"]
                assert attempt["http_status"] is None and why in attempt["error"]
            assert await pipeline.deliveries(tenant, "public") == []  # paused: none recorded
    finally:
        await receiver.stop()
    assert receiver.requests == []

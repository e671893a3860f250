"""Password guessing is throttled per (account, client address); credential changes reach every
replica within 2 s. In process, against the real database and broker."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from cdr_ingest.app import create_app as ingest_app
from cdr_ingest.settings import IngestSettings
from cdrmodel.auth import FailureThrottle
from cdrmodel.principals import PrincipalDirectory
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, Tenant, wait_for
from tests.inprocess.conftest import ADMIN, Pipeline

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

ATTACKER = "203.0.113.66"
PBX = "198.51.100.10"


@dataclass
class Ingest:
    """An ingest app of this test's own, reachable from any client address, and its
    PrincipalDirectory (to tune the throttle and to count real password checks)."""

    app: ASGIApp
    directory: PrincipalDirectory
    checks: list[str] = field(default_factory=list)

    def client(self, address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 50000)),
            base_url="http://ingest.inprocess",
            timeout=30,
        )


@pytest.fixture
async def ingest(infra: Infra, pipeline: Pipeline) -> AsyncIterator[Ingest]:
    app = ingest_app(
        IngestSettings(
            database_url=pipeline.database_url,
            kafka_bootstrap=infra.bootstrap,
            topic_namespace=pipeline.namespace,
            admin_token=ADMIN_TOKEN,
            db_pool_size=2,
        )
    )
    lifespan_state: dict[str, Any] = {}

    async def keep_state(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            lifespan_state["state"] = scope["state"]  # filled by the lifespan as it starts
        await app(scope, receive, send)

    async with LifespanManager(keep_state, startup_timeout=60, shutdown_timeout=60) as manager:
        directory: PrincipalDirectory = lifespan_state["state"]["ingest"].directory
        built = Ingest(app=manager.app, directory=directory)
        real_verify = directory.verifier.verify

        async def counted_verify(password_hash: str, password: str) -> bool:
            built.checks.append(password)
            return await real_verify(password_hash, password)

        directory.verifier.verify = counted_verify  # type: ignore[method-assign]
        async with built.client(PBX) as probe:
            await wait_for(
                lambda: _ok(probe.get("/readyz")), timeout=60, what="in-process ingest ready"
            )
        yield built


async def _ok(response: Awaitable[httpx.Response]) -> bool:
    return (await response).status_code == 200


async def submit(client: httpx.AsyncClient, tenant: Tenant, password: str) -> str:
    resp = await client.get(
        "/api_submitcdr.aspx", params=tenant.submit_params(APIPassword=password)
    )
    assert resp.status_code == 200, resp.text
    return resp.text


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_guessing_from_one_address_is_refused_unchecked_while_other_addresses_pass(
    ingest: Ingest, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    ingest.directory.throttle = FailureThrottle(base_backoff=1.5)
    throttled_before = metric("cdrflow_auth_throttled_total")
    lockouts_before = metric("cdrflow_auth_lockouts_total")
    async with ingest.client(ATTACKER) as attacker, ingest.client(PBX) as pbx:
        assert await submit(pbx, tenant, tenant.password) == "0"
        with caplog.at_level(logging.WARNING, logger="cdrmodel.principals"):
            for n in range(5):
                assert await submit(attacker, tenant, f"guess-{n}") == "50390"
        assert len(ingest.checks) == 6  # the PBX's success and five checked guesses
        answers = [await submit(attacker, tenant, f"guess-{n}") for n in range(5, 25)]
        # The right password too: during the backoff nothing from this address is checked.
        answers.append(await submit(attacker, tenant, tenant.password))
        assert answers == ["50390"] * 21
        assert len(ingest.checks) == 6
        # The account's real PBX, at another address, is not slowed.
        started = time.monotonic()
        assert [await submit(pbx, tenant, tenant.password) for _ in range(3)] == ["0"] * 3
        assert time.monotonic() - started < 1.0
        # After the backoff the right password is accepted, and the slate is clean again.
        accepted = await wait_for(
            lambda: _is(submit(attacker, tenant, tenant.password), "0"),
            timeout=5,
            what="the right password accepted after the backoff",
        )
        assert accepted
        assert await submit(attacker, tenant, "one-more-typo") == "50390"
        assert await submit(attacker, tenant, tenant.password) == "0"

    assert metric("cdrflow_auth_lockouts_total") - lockouts_before == 1
    # 21 refused unchecked, plus any wait_for probes that landed inside the backoff.
    assert metric("cdrflow_auth_throttled_total") - throttled_before >= 21
    lines = [r.getMessage() for r in caplog.records if r.name == "cdrmodel.principals"]
    assert len(lines) == 1
    assert tenant.login in lines[0] and ATTACKER in lines[0]
    assert "guess-" not in lines[0] and tenant.password not in lines[0]


async def _is(answer: Awaitable[str], expected: str) -> bool:
    return await answer == expected


async def test_the_backoff_grows_with_each_wrong_password_after_it(
    ingest: Ingest, tenant: Tenant
) -> None:
    ingest.directory.throttle = FailureThrottle(base_backoff=0.3, max_backoff=1.2)
    async with ingest.client(ATTACKER) as attacker:
        for n in range(5):
            assert await submit(attacker, tenant, f"guess-{n}") == "50390"
        blocked = []
        for _ in range(4):
            started = time.monotonic()
            checks = len(ingest.checks)
            # Keep guessing; a guess is checked again only once the backoff has passed.
            await wait_for(
                lambda checks=checks: _guess_checked(ingest, attacker, tenant, checks),
                timeout=10,
                interval=0.02,
                what="a guess checked again",
            )
            blocked.append(time.monotonic() - started)
        assert blocked[0] >= 0.3 and blocked[1] >= 0.6 and blocked[2] >= 1.2
        assert blocked[1] > blocked[0] and blocked[2] > blocked[1]
        # Capped: about as long as the round before (doubled, it would be 2.4 s). Bounded by
        # that round's own time, not by 1.2 s plus a margin a loaded runner overran (1.96 s).
        assert blocked[3] < blocked[2] + 0.6, blocked


async def _guess_checked(
    ingest: Ingest, attacker: httpx.AsyncClient, tenant: Tenant, checks: int
) -> bool:
    assert await submit(attacker, tenant, "still-guessing") == "50390"
    return len(ingest.checks) > checks


async def test_the_notifier_query_auth_throttles_per_client_address(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # The shared notifier's app as its lifespan runs it, reached from two addresses.
    app = pipeline.notifier._transport.app  # type: ignore[attr-defined]

    def client(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 50000)),
            base_url="http://notifier.inprocess",
        )

    async with client(ATTACKER) as attacker, client(PBX) as crm:
        for n in range(5):
            resp = await attacker.get("/v1/cdrs", auth=(tenant.login, f"guess-{n}"))
            assert resp.status_code == 401 and resp.json()["code"] == 50390
        resp = await attacker.get("/v1/cdrs", auth=(tenant.login, tenant.password))
        assert resp.status_code == 401 and resp.json()["code"] == 50390
        resp = await crm.get("/v1/cdrs", auth=(tenant.login, tenant.password))
        assert resp.status_code == 200, resp.text
        resp = await crm.get(
            "/v1/cdrs", params={"login": tenant.login, "password": tenant.password}
        )
        assert resp.status_code == 200, resp.text


async def test_a_password_change_takes_effect_within_two_seconds_on_every_replica(
    pipeline: Pipeline, ingest: Ingest, tenant: Tenant
) -> None:
    async with ingest.client(PBX) as replica:
        began = time.monotonic()
        assert await submit(replica, tenant, tenant.password) == "0"
        assert await pipeline.submit(tenant) == "0"
        resp = await pipeline.notifier.get("/v1/cdrs", auth=(tenant.login, tenant.password))
        assert resp.status_code == 200  # all three directories hold the old password
        # What one probe of each replica costs here: the delays below include the probe
        # that saw the change, which a loaded runner (the other worker's tests on the other
        # core) slows by itself.
        probes = time.monotonic() - began

        new_password = "pw-" + uuid.uuid4().hex[:8]
        resp = await pipeline.rater.put(
            f"/v1/admin/tenants/{tenant.database_id}/api-accounts/{tenant.account}",
            json={"password": new_password},
            headers=ADMIN,
        )
        assert resp.status_code == 200, resp.text
        changed = time.monotonic()

        # Each replica is probed with the old password until it refuses it (one wrong
        # password each: far from the throttle), then must accept the new one at once.
        async def refused_by_ingest(client: httpx.AsyncClient) -> float:
            await wait_for(
                lambda: _is(submit(client, tenant, tenant.password), "50390"),
                timeout=5,
                interval=0.1,
                what="the old password refused",
            )
            seen = time.monotonic() - changed
            assert await submit(client, tenant, new_password) == "0"
            return seen

        async def refused_by_notifier() -> float:
            async def refused() -> bool:
                resp = await pipeline.notifier.get("/v1/cdrs", auth=(tenant.login, tenant.password))
                return resp.status_code == 401

            await wait_for(refused, timeout=5, interval=0.1, what="the old password refused")
            seen = time.monotonic() - changed
            resp = await pipeline.notifier.get("/v1/cdrs", auth=(tenant.login, new_password))
            assert resp.status_code == 200, resp.text
            return seen

        delays = await asyncio.gather(
            refused_by_ingest(replica), refused_by_ingest(pipeline.ingest), refused_by_notifier()
        )
    print(f"password change seen after {', '.join(f'{d:.2f} s' for d in delays)}")
    assert max(delays) < 2.0 + probes, f"probes took {probes:.2f} s"


async def test_a_deleted_account_is_refused_within_two_seconds(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    url = f"/v1/admin/tenants/{tenant.database_id}/api-accounts/reader"
    resp = await pipeline.rater.put(url, json={"password": "reader-pw"}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    login = f"{tenant.database_id}/reader"
    resp = await pipeline.notifier.get("/v1/cdrs", auth=(login, "reader-pw"))
    assert resp.status_code == 200, resp.text

    await pipeline.sql(
        "DELETE FROM api_account WHERE database_id = $1 AND api_account_id = 'reader'",
        tenant.database_id,
    )
    deleted = time.monotonic()

    async def refused() -> bool:
        resp = await pipeline.notifier.get("/v1/cdrs", auth=(login, "reader-pw"))
        return resp.status_code == 401 and resp.json()["code"] == 50440

    await wait_for(refused, timeout=5, interval=0.1, what="the deleted account refused")
    assert time.monotonic() - deleted < 2.0


async def test_32_concurrent_guessers_get_a_handful_of_real_checks(
    ingest: Ingest, tenant: Tenant
) -> None:
    """The attack of issue 8: one client, 32 connections, wrong passwords as fast as it can."""
    async with ingest.client(PBX) as pbx:
        assert await submit(pbx, tenant, tenant.password) == "0"  # the credential is cached
    ingest.checks.clear()
    answers: list[str] = []
    seconds = 2.0

    async with ingest.client(ATTACKER) as attacker:
        deadline = time.monotonic() + seconds

        async def guesser(worker: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                answers.append(await submit(attacker, tenant, f"guess-{worker}-{n}"))
                n += 1

        await asyncio.gather(*(guesser(w) for w in range(32)))
    print(
        f"{len(answers) / seconds:.0f} answers/s, "
        f"{len(ingest.checks) / seconds:.1f} passwords checked/s"
    )
    assert set(answers) == {"50390"}
    assert len(answers) > 100
    # Five in the grace, and at most one per backoff that ends (1 s, then 2 s) in the run.
    assert len(ingest.checks) <= 5 + 2

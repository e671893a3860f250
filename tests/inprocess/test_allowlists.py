"""API-account address allowlists in process: set, shown and cleared through the rater's admin
API (bad CIDRs a 422 naming them), then every notifier read judged by the caller's address
(IPv4, IPv6, IPv4-mapped IPv6) with 403 outside; submissions are not limited by them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from tests.helpers import Tenant, wait_for
from tests.inprocess.conftest import ADMIN, Pipeline

INSIDE = ["192.0.2.10", "::ffff:192.0.2.10", "2001:db8:0:7::5"]
OUTSIDE = ["203.0.113.5", "::ffff:203.0.113.5", "2001:db9::5", "::192.0.2.10"]

Client = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


def _account_path(tenant: Tenant) -> str:
    return f"/v1/admin/tenants/{tenant.database_id}/api-accounts/{tenant.account}"


async def _put(pipeline: Pipeline, tenant: Tenant, **body: Any) -> httpx.Response:
    return await pipeline.rater.put(
        _account_path(tenant), json={"daily_limit": None, **body}, headers=ADMIN
    )


def _from(app: Any, base_url: str) -> Client:
    def client(address: str) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 50000)),
            base_url=base_url,
            timeout=30,
        )

    return client


@pytest.fixture
def notifier_from(pipeline: Pipeline) -> Client:
    """Clients of the shared notifier (its lifespan state and all) from a given address."""
    return _from(pipeline.notifier._transport.app, "http://notifier.inprocess")  # type: ignore[attr-defined]


@pytest.fixture
async def fenced(
    pipeline: Pipeline, tenant: Tenant, notifier_from: Client
) -> AsyncIterator[tuple[Tenant, str]]:
    """The tenant, with one stored CDR that has a recording (its id), its account then
    limited to 192.0.2.0/24 and 2001:db8::/48, in force in the notifier."""
    url = "https://rec.example.net/r/1"
    assert await pipeline.submit(tenant, ExternalID="x1", Record=url) == "0"
    (stored,) = await pipeline.wait_stored(tenant, 1)
    resp = await _put(pipeline, tenant, allowed_networks=["192.0.2.0/24", "2001:db8::/48"])
    assert resp.status_code == 200, resp.text
    # wait_stored read as the account just now: the notifier's principal cache may answer
    # with the row before the PUT for up to 1.5 s (cdrmodel.principals; the bound itself is
    # test_a_changed_list_is_in_force_within_2_seconds_...'s).
    async with notifier_from("127.0.0.1") as loopback:

        async def in_force() -> bool:
            resp = await loopback.get("/v1/cdrs", auth=(tenant.login, tenant.password))
            return resp.status_code == 403

        await wait_for(in_force, timeout=10, what="the allowlist in force")
    yield tenant, stored["cdr_id"]


async def test_the_admin_api_sets_shows_and_clears_allowed_networks(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    path = _account_path(tenant)
    fresh = (await pipeline.rater.get(path, headers=ADMIN)).json()
    assert fresh["allowed_networks"] is None  # anywhere, until set
    networks = ["192.0.2.77/24", "2001:DB8::1/48", "198.51.100.7", "::ffff:10.0.0.0/104"]
    resp = await _put(pipeline, tenant, allowed_networks=networks)
    assert resp.status_code == 200, resp.text
    normalised = ["192.0.2.0/24", "2001:db8::/48", "198.51.100.7/32", "10.0.0.0/8"]
    assert resp.json()["allowed_networks"] == normalised
    assert (await pipeline.rater.get(path, headers=ADMIN)).json()["allowed_networks"] == normalised
    listed = await pipeline.rater.get(
        f"/v1/admin/tenants/{tenant.database_id}/api-accounts", headers=ADMIN
    )
    assert listed.json()["api_accounts"][0]["allowed_networks"] == normalised
    rows = await pipeline.sql(
        "SELECT allowed_networks FROM api_account WHERE database_id = $1", tenant.database_id
    )
    assert rows[0]["allowed_networks"] == normalised
    # null clears it; so does a PUT without it (a PUT replaces the account's settings).
    resp = await _put(pipeline, tenant, allowed_networks=None)
    assert resp.status_code == 200 and resp.json()["allowed_networks"] is None
    await _put(pipeline, tenant, allowed_networks=["192.0.2.0/24"])
    resp = await _put(pipeline, tenant)
    assert resp.status_code == 200 and resp.json()["allowed_networks"] is None
    resp = await _put(pipeline, tenant, allowed_networks=[])
    assert resp.status_code == 200 and resp.json()["allowed_networks"] == []


@pytest.mark.parametrize(
    ("networks", "named"),
    [
        (["192.0.2.0/24", "10.0.0.0/33"], "'10.0.0.0/33'"),
        (["300.1.2.3"], "'300.1.2.3'"),
        (["2001:db8::/129"], "'2001:db8::/129'"),
        (["pbx.example.net"], "'pbx.example.net'"),
        (["fe80::1%eth0"], "zone index"),
        (["10.0.0.0/8\n"], "control characters"),
        ("10.0.0.0/8", "allowed_networks"),  # a string, not a list
        ([f"10.0.{i // 256}.{i % 256}" for i in range(101)], "at most 100"),
    ],
)
async def test_a_bad_allowlist_is_a_422_naming_it_and_changes_nothing(
    pipeline: Pipeline, tenant: Tenant, networks: Any, named: str
) -> None:
    await _put(pipeline, tenant, allowed_networks=["198.51.100.0/24"])
    resp = await _put(pipeline, tenant, allowed_networks=networks)
    assert resp.status_code == 422, resp.text
    assert "allowed_networks" in resp.json()["message"] and named in resp.json()["message"]
    kept = (await pipeline.rater.get(_account_path(tenant), headers=ADMIN)).json()
    assert kept["allowed_networks"] == ["198.51.100.0/24"]


@pytest.mark.parametrize("address", INSIDE)
async def test_an_account_reads_from_inside_its_networks(
    notifier_from: Client, fenced: tuple[Tenant, str], address: str
) -> None:
    tenant, cdr_id = fenced
    async with notifier_from(address) as notifier:
        resp = await notifier.get("/v1/cdrs", auth=(tenant.login, tenant.password))
        assert resp.status_code == 200, resp.text
        assert [r["cdr_id"] for r in resp.json()["cdrs"]] == [cdr_id]
        resp = await notifier.get(
            "/v1/cdrs", params={"login": tenant.login, "password": tenant.password}
        )
        assert resp.status_code == 200, resp.text
        resp = await notifier.get(
            f"/v1/cdrs/{cdr_id}/recording", auth=(tenant.login, tenant.password)
        )
        assert resp.status_code == 302 and resp.headers["location"] == "https://rec.example.net/r/1"


@pytest.mark.parametrize("address", OUTSIDE)
async def test_an_account_gets_403_and_no_data_from_outside_its_networks(
    notifier_from: Client, fenced: tuple[Tenant, str], address: str
) -> None:
    tenant, cdr_id = fenced
    auth = (tenant.login, tenant.password)
    async with notifier_from(address) as notifier:
        resp = await notifier.get("/v1/cdrs", auth=auth)
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert body == {
            "message": f"API account {tenant.login} may not read from {address}: the address "
            "is outside its allowed_networks"
        }
        assert cdr_id not in resp.text and "www-authenticate" not in resp.headers
        # The recording endpoint: the same 403 for a CDR that exists and for one that does not.
        known = await notifier.get(f"/v1/cdrs/{cdr_id}/recording", auth=auth)
        unknown = await notifier.get(
            "/v1/cdrs/0193c4d2-0000-7000-8000-000000000000/recording", auth=auth
        )
        assert (known.status_code, known.json()) == (403, body)
        assert (unknown.status_code, unknown.json()) == (403, body)
        assert "location" not in known.headers
        # Login parameters are no way around it; a wrong password is still a 401 (auth first).
        resp = await notifier.get(
            "/v1/cdrs", params={"login": tenant.login, "password": tenant.password}
        )
        assert resp.status_code == 403
        resp = await notifier.get("/v1/cdrs", auth=(tenant.login, "wrong"))
        assert resp.status_code == 401 and resp.json()["code"] == 50390


async def test_a_changed_list_is_in_force_within_2_seconds_and_clearing_it_reopens(
    pipeline: Pipeline, notifier_from: Client, fenced: tuple[Tenant, str]
) -> None:
    tenant, _ = fenced
    auth = (tenant.login, tenant.password)
    async with notifier_from("203.0.113.5") as outside:
        assert (await outside.get("/v1/cdrs", auth=auth)).status_code == 403
        assert (await _put(pipeline, tenant, allowed_networks=None)).status_code == 200

        async def open_again() -> bool:
            return (await outside.get("/v1/cdrs", auth=auth)).status_code == 200

        await wait_for(open_again, timeout=2, what="a cleared allowlist to reopen reads")
        resp = await _put(pipeline, tenant, allowed_networks=["203.0.113.0/24"])
        assert resp.status_code == 200
        async with notifier_from("192.0.2.10") as formerly_inside:

            async def closed() -> bool:
                return (await formerly_inside.get("/v1/cdrs", auth=auth)).status_code == 403

            await wait_for(closed, timeout=2, what="a new allowlist to refuse the old network")
        assert (await outside.get("/v1/cdrs", auth=auth)).status_code == 200


async def test_submissions_are_not_limited_by_the_allowlist(
    pipeline: Pipeline, fenced: tuple[Tenant, str]
) -> None:
    tenant, _ = fenced
    ingest_from = _from(pipeline.ingest._transport.app, "http://ingest.inprocess")  # type: ignore[attr-defined]
    async with ingest_from("203.0.113.5") as pbx:
        resp = await pbx.get("/api_submitcdr.aspx", params=tenant.submit_params(ExternalID="x2"))
        assert resp.text == "0"
        resp = await pbx.post(
            "/v1/cdrs",
            json={"originating_number": "100", "destination_number": "16135550100", "duration": 5},
            auth=(tenant.login, tenant.password),
        )
        assert resp.status_code == 200 and resp.json()["accepted"] == 1


# Every read an API account makes, each as its route takes credentials.
READS = [
    ("GET", "/billing/feed", {}),
    ("GET", "/v1/cdrs", {"format": "csv"}),
    ("GET", "/v1/reports/unrated", {}),
    ("GET", "/v1/reports/agents", {}),
    ("GET", "/v1/reports/answer-ratio", {}),
    ("GET", "/v1/reports/peak-hours", {}),
    ("GET", "/api/cdr", {"action": "getCallBilling"}),
    ("POST", "/api/cdr", {"action": "getCallBilling"}),
]


@pytest.mark.parametrize(("method", "path", "params"), READS)
async def test_every_read_is_refused_outside_the_networks(
    notifier_from: Client,
    fenced: tuple[Tenant, str],
    method: str,
    path: str,
    params: dict[str, str],
) -> None:
    tenant, cdr_id = fenced
    auth = (tenant.login, tenant.password)
    async with notifier_from("192.0.2.10") as inside:
        assert (await inside.request(method, path, params=params, auth=auth)).status_code == 200
    async with notifier_from("203.0.113.5") as outside:
        resp = await outside.request(method, path, params=params, auth=auth)
        assert resp.status_code == 403, resp.text
        assert "allowed_networks" in resp.text and cdr_id not in resp.text
        if path == "/api/cdr":  # seed 002's error shape, on that endpoint alone
            assert resp.json()["status"] == "error"
        if method == "POST":  # credentials in the form body are no way around it
            body = {"login": tenant.login, "password": tenant.password, **params}
            resp = await outside.post(path, data=body)
            assert resp.status_code == 403, resp.text

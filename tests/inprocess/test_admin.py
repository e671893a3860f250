"""The rater's admin API in process: bearer token, atomic deck replacement, every deck error
named by line, clear 4xx errors, and configuration the rater then prices with."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN_TOKEN, Tenant
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _tenant_url(tenant: Tenant) -> str:
    return f"/v1/admin/tenants/{tenant.database_id}"


def _deck_url(tenant: Tenant) -> str:
    return f"{_tenant_url(tenant)}/packages/{tenant.package}/rates"


async def test_admin_needs_the_bearer_token(pipeline: Pipeline) -> None:
    none = await pipeline.rater.put("/v1/admin/tenants/X", json={})
    wrong = await pipeline.rater.put(
        "/v1/admin/tenants/X", json={}, headers={"authorization": "Bearer nope-nope"}
    )
    for resp in (none, wrong):
        assert resp.status_code == 401
        assert resp.json() == {"message": "admin bearer token missing or wrong"}
    # Nothing was created by the refused calls.
    assert await pipeline.sql("SELECT 1 FROM tenant WHERE database_id = 'X'") == []


async def test_malformed_csv_names_the_line_and_replaces_nothing(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    bad = "prefix,rate,increment\n44,0.05,60\n33,lots,60\n49,0.04,0\n"
    before = (await pipeline.rater.get(_deck_url(tenant), headers=AUTH)).json()["rates"]
    resp = await pipeline.rater.put(
        _deck_url(tenant), content=bad, headers={**AUTH, "content-type": "text/csv"}
    )
    after = (await pipeline.rater.get(_deck_url(tenant), headers=AUTH)).json()["rates"]
    assert resp.status_code == 422
    body = resp.json()
    assert body["message"] == "line 3: rate 'lots' is not a decimal number (2 bad lines in all)"
    assert body["detail"] == {
        "bad": 2,
        "listed": 2,
        "errors": [
            {"line": 3, "reason": "rate 'lots' is not a decimal number"},
            {"line": 4, "reason": "increment must be a whole number of seconds, 1 to 86400"},
        ],
    }
    assert after == before and len(before) == 3


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[{", "application/json", "body is not valid JSON"),
        (b'{"prefix": "1", "rate": "1"}', "application/json", "a JSON deck is a list of objects"),
        (b'[{"prefix": "1"}]', "application/json", "item 1: rate missing"),
        (b"prefix,rate\n\xff1,1\n", "text/csv", "CSV deck must be UTF-8"),
        (b"rate\n1\n", "text/csv", "line 1: CSV header must name at least prefix and rate"),
        (b"prefix,rate\n1,2,3\n", "text/csv", "line 2: more fields than the header"),
        (b"prefix,rate,colour\n1,2,red\n", "text/csv", "line 2: unknown column 'colour'"),
        (b"prefix,rate\nabc,1\n", "text/csv", "line 2: prefix 'abc' must be digits only"),
        (b"prefix,rate\n1,\n", "text/csv", "line 2: rate missing"),
        (b"prefix,rate\n1,-0.5\n", "text/csv", "line 2: rate must be a non-negative number"),
        (b"prefix,rate\n1,NaN\n", "text/csv", "line 2: rate must be a non-negative number"),
        (b"\r0", "text/csv", "line 1: not readable as CSV"),  # found by the fuzzer: was 500
        (
            b"prefix,rate\n1,1E+25\n",
            "text/csv",
            "line 2: rate must be below 10^12 with at most 8 decimal places",
        ),
        (
            b"prefix,rate,connect_fee\n1,1,0.000000005\n",
            "text/csv",
            "line 2: connect_fee must be below 10^12 with at most 8 decimal places",
        ),
        (
            b"prefix,rate,initial_increment\n1,1,x\n",
            "text/csv",
            "line 2: initial_increment must be a whole number of seconds, 0 to 86400",
        ),
        (
            b"prefix,rate,effective_from\n1,1,yesterday\n",
            "text/csv",
            "line 2: effective_from 'yesterday' is not an ISO 8601 date/time",
        ),
        (
            b"prefix,rate,direction\n1,1,sideways\n",
            "text/csv",
            "line 2: direction 'sideways' must be outbound or inbound",
        ),
        (
            b"prefix,rate,effective_from,effective_to\n1,1,2026-02-01,2026-01-01\n",
            "text/csv",
            "line 2: effective_to must be after effective_from",
        ),
    ],
)
async def test_each_deck_error_is_named_and_the_deck_kept(
    pipeline: Pipeline, tenant: Tenant, body: bytes, content_type: str, message: str
) -> None:
    resp = await pipeline.rater.put(
        _deck_url(tenant), content=body, headers={**AUTH, "content-type": content_type}
    )
    assert resp.status_code == 422
    assert resp.json()["message"].startswith(message)
    kept = (await pipeline.rater.get(_deck_url(tenant), headers=AUTH)).json()["rates"]
    assert [r["prefix"] for r in kept] == ["1", "1418", "1613"]


async def test_json_deck_replaces_atomically_and_query_finds_lines(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    deck = [
        {"prefix": "1418", "destination": "Canada - 418 Quebec City", "rate": "0.015"},
        {"prefix": "44", "destination": "United Kingdom", "rate": 0.05, "increment": 1},
    ]
    put = await pipeline.rater.put(_deck_url(tenant), json=deck, headers=AUTH)
    assert put.json() == {"deck": f"package/{tenant.package}", "lines": 2}
    found = await pipeline.rater.get(_deck_url(tenant), params={"query": "Canada"}, headers=AUTH)
    by_prefix = await pipeline.rater.get(_deck_url(tenant), params={"query": "44"}, headers=AUTH)
    (canada,) = found.json()["rates"]
    assert canada["prefix"] == "1418" and canada["rate"] == "0.01500000"
    assert canada["increment"] == 60 and canada["direction"] == "outbound"
    (uk,) = by_prefix.json()["rates"]
    # A JSON number is read as an exact decimal, never through a float.
    assert uk["destination"] == "United Kingdom" and uk["rate"] == "0.05000000"
    assert uk["increment"] == 1


async def test_route_deck_lists_its_cost_lines(pipeline: Pipeline, tenant: Tenant) -> None:
    url = f"{_tenant_url(tenant)}/routes/{tenant.route}/rates"
    lines = (await pipeline.rater.get(url, headers=AUTH)).json()["rates"]
    assert [(r["prefix"], r["rate"], r["increment"]) for r in lines] == [
        ("1418", "0.00520000", 6),
        ("1613", "0.00520000", 6),
    ]
    emptied = await pipeline.rater.put(
        url, content="prefix,rate\n", headers={**AUTH, "content-type": "text/csv"}
    )
    assert emptied.json()["lines"] == 0
    assert (await pipeline.rater.get(url, headers=AUTH)).json()["rates"] == []


async def test_unknown_tenant_deck_and_bad_bodies_are_4xx(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    missing = await pipeline.rater.put(
        "/v1/admin/tenants/NOPE_DB/api-accounts/A", json={"password": "x"}, headers=AUTH
    )
    assert missing.status_code == 404
    assert missing.json() == {"message": "tenant 'NOPE_DB' not found"}
    listing = await pipeline.rater.get("/v1/admin/tenants/NOPE_DB/routes/r/rates", headers=AUTH)
    assert listing.status_code == 404
    no_deck = await pipeline.rater.put(
        f"{_tenant_url(tenant)}/packages/nosuch/rates", json=[], headers=AUTH
    )
    assert no_deck.status_code == 404
    assert no_deck.json()["message"] == (
        f"package 'nosuch' not found in tenant {tenant.database_id!r}"
    )
    zone = await pipeline.rater.put(
        "/v1/admin/tenants/ZONE_DB", json={"timezone": "Mars/Olympus"}, headers=AUTH
    )
    assert zone.status_code == 422
    assert zone.json()["message"] == "timezone: Value error, unknown IANA time zone 'Mars/Olympus'"
    country = await pipeline.rater.put(
        "/v1/admin/tenants/ZONE_DB", json={"country": "XX"}, headers=AUTH
    )
    assert country.status_code == 422 and "'XX'" in country.json()["message"]
    extra = await pipeline.rater.put(
        f"{_tenant_url(tenant)}/routes/r2", json={"name": "r", "colour": "red"}, headers=AUTH
    )
    assert extra.status_code == 422 and extra.json()["message"].startswith("colour:")


async def test_admin_answers_echo_what_was_stored(pipeline: Pipeline, tenant: Tenant) -> None:
    account = await pipeline.rater.put(
        f"{_tenant_url(tenant)}/api-accounts/ACC2",
        json={"password": "pw2", "daily_limit": None, "default_package": tenant.package},
        headers=AUTH,
    )
    assert account.json() | {"updated_at": None} == {
        "database_id": tenant.database_id,
        "api_account_id": "ACC2",
        "login": f"{tenant.database_id}/ACC2",
        "daily_limit": None,
        "default_package": tenant.package,
        "allowed_networks": None,
        "updated_at": None,
    }
    (row,) = await pipeline.sql(
        "SELECT password_hash, daily_limit FROM api_account"
        " WHERE database_id = $1 AND api_account_id = 'ACC2'",
        tenant.database_id,
    )
    assert row["password_hash"].startswith("$argon2") and row["daily_limit"] is None
    ext = await pipeline.rater.put(
        f"{_tenant_url(tenant)}/extensions/200",
        json={"package": tenant.package, "account": "200000_VoIP", "client": "c1"},
        headers=AUTH,
    )
    assert ext.json() | {"updated_at": None} == {
        "database_id": tenant.database_id,
        "extension": "200",
        "package": tenant.package,
        "account": "200000_VoIP",
        "client": "c1",
        "updated_at": None,
    }


async def test_default_package_prices_calls_from_numbers_that_are_not_extensions(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await pipeline.rater.put(
        f"{_tenant_url(tenant)}/api-accounts/{tenant.account}",
        json={"password": tenant.password, "default_package": tenant.package},
        headers=AUTH,
    )
    assert await pipeline.submit(tenant, OriginatingNumber="555", ExternalID="dp1") == "0"
    (record,) = await pipeline.wait_stored(tenant, 1)
    assert record["rated"] is True and record["extension"] is None
    assert record["total"] == "0.03000000" and record["matched_prefix"] == "1613"


async def test_a_caller_without_extension_or_default_package_is_unrated_no_package(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, OriginatingNumber="555") == "0"
    (record,) = await pipeline.wait_stored(tenant, 1)
    assert record["rated"] is False and record["unrated_reason"] == "no_package"
    assert record["total"] is None and record["price"] == 0


async def test_every_configuration_change_bumps_the_tenants_config_version(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    async def version() -> int:
        rows = await pipeline.sql(
            f"SELECT config_version FROM tenant WHERE database_id = '{tenant.database_id}'"
        )
        return int(rows[0][0])

    base = _tenant_url(tenant)
    changes = [
        ("put", base, {"json": {"name": "renamed", "timezone": "UTC"}}),
        ("put", f"{base}/extensions/4242", {"json": {"package": tenant.package}}),
        ("put", f"{base}/packages/P2", {"json": {"name": "second"}}),
        ("put", f"{base}/routes/R2", {"json": {"name": "route two"}}),
        ("put", f"{base}/packages/P2/rates", {"json": [{"prefix": "44", "rate": "0.1"}]}),
    ]
    for method, url, kwargs in changes:
        before = await version()
        resp = await getattr(pipeline.rater, method)(url, headers=AUTH, **kwargs)
        assert resp.status_code == 200, resp.text
        assert await version() == before + 1, url
    # A refused change changes nothing.
    before = await version()
    resp = await pipeline.rater.put(f"{base}/packages/NOPE/rates", headers=AUTH, json=[])
    assert resp.status_code == 404
    assert await version() == before

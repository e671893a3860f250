"""Every admin resource read back by GET (one and a page of them), 404s that name what is
missing, and API account passwords: kept when omitted, rotated everywhere within 2 s."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cdrmodel.principals import PASSWORD_WRONG
from tests.helpers import ADMIN_TOKEN, Tenant, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def _get(pipeline: Pipeline, path: str, **params: Any) -> Any:
    resp = await pipeline.rater.get(f"/v1/admin/tenants{path}", params=params, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_each_resource_reads_back_what_was_put(pipeline: Pipeline, tenant: Tenant) -> None:
    db = f"/{tenant.database_id}"
    got = await _get(pipeline, db)
    assert {k: got[k] for k in ("database_id", "name", "timezone", "country", "currency")} == {
        "database_id": tenant.database_id,
        "name": "test",
        "timezone": "UTC",
        "country": "US",
        "currency": "USD",
    }
    account = await _get(pipeline, f"{db}/api-accounts/{tenant.account}")
    assert "password" not in str(account) and "argon2" not in str(account)
    assert account["login"] == tenant.login and account["daily_limit"] is None
    package = await _get(pipeline, f"{db}/packages/{tenant.package}")
    assert (package["name"], package["route"]) == ("pkg", tenant.route)
    route = await _get(pipeline, f"{db}/routes/{tenant.route}")
    assert route["name"] == "route"
    ext = await _get(pipeline, f"{db}/extensions/100")
    assert (ext["package"], ext["account"], ext["client"]) == (tenant.package, "100000_VoIP", None)


async def test_lists_page_through_a_tenants_resources(pipeline: Pipeline, tenant: Tenant) -> None:
    db = f"/v1/admin/tenants/{tenant.database_id}"
    for number in ("101", "102"):
        resp = await pipeline.rater.put(
            f"{db}/extensions/{number}", json={"package": tenant.package}, headers=AUTH
        )
        assert resp.status_code == 200, resp.text
    page = await _get(pipeline, f"/{tenant.database_id}/extensions", limit=2)
    assert [e["extension"] for e in page["extensions"]] == ["100", "101"]
    rest = await _get(pipeline, f"/{tenant.database_id}/extensions", limit=2, offset=2)
    assert [e["extension"] for e in rest["extensions"]] == ["102"]
    for path, field, ids in (
        ("api-accounts", "api_accounts", [tenant.account]),
        ("packages", "packages", [tenant.package]),
        ("routes", "routes", [tenant.route]),
    ):
        listed = (await _get(pipeline, f"/{tenant.database_id}/{path}"))[field]
        key = field.removesuffix("s") + "_id"
        assert [item[key] for item in listed] == ids
    tenants = (await _get(pipeline, "", limit=1000))["tenants"]
    assert tenant.database_id in [t["database_id"] for t in tenants]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/NOPE", "tenant 'NOPE' not found"),
        ("/NOPE/packages", "tenant 'NOPE' not found"),
        ("/NOPE/extensions/100", "tenant 'NOPE' not found"),
        ("/{db}/api-accounts/ghost", "api account 'ghost' not found in tenant '{db}'"),
        ("/{db}/packages/ghost", "package 'ghost' not found in tenant '{db}'"),
        ("/{db}/routes/ghost", "route 'ghost' not found in tenant '{db}'"),
        ("/{db}/extensions/999", "extension '999' not found in tenant '{db}'"),
        ("/{db}/packages/ghost/rates", "package 'ghost' not found in tenant '{db}'"),
        ("/{db}/routes/ghost/rates", "route 'ghost' not found in tenant '{db}'"),
    ],
)
async def test_unknown_ids_are_404_naming_them(
    pipeline: Pipeline, tenant: Tenant, path: str, message: str
) -> None:
    db = tenant.database_id
    resp = await pipeline.rater.get("/v1/admin/tenants" + path.replace("{db}", db), headers=AUTH)
    assert resp.status_code == 404
    assert resp.json() == {"message": message.replace("{db}", db)}


async def test_bad_paging_is_422(pipeline: Pipeline, tenant: Tenant) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        resp = await pipeline.rater.get(
            f"/v1/admin/tenants/{tenant.database_id}/packages", params=params, headers=AUTH
        )
        assert resp.status_code == 422, params
        assert resp.json()["message"].startswith(next(iter(params)))


async def test_an_account_update_without_password_keeps_it(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    url = f"/v1/admin/tenants/{tenant.database_id}/api-accounts/{tenant.account}"
    (before,) = await pipeline.sql(
        "SELECT password_hash FROM api_account WHERE database_id = $1", tenant.database_id
    )
    resp = await pipeline.rater.put(url, json={"daily_limit": 5}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["daily_limit"] == 5
    (after,) = await pipeline.sql(
        "SELECT password_hash, daily_limit FROM api_account WHERE database_id = $1",
        tenant.database_id,
    )
    assert after["password_hash"] == before["password_hash"] and after["daily_limit"] == 5
    assert await pipeline.submit(tenant, ExternalID="kept") == "0"
    new = await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/api-accounts/NEW", json={}, headers=AUTH
    )
    assert new.status_code == 422
    assert new.json() == {"message": "password: required to create an API account"}
    assert (
        await pipeline.sql(
            "SELECT 1 FROM api_account WHERE database_id = $1 AND api_account_id = 'NEW'",
            tenant.database_id,
        )
        == []
    )


async def test_a_rotated_password_is_in_force_within_2_seconds(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # The old password is known to the ingest's caches before the rotation.
    assert await pipeline.submit(tenant, ExternalID="before") == "0"
    old, new = tenant.password, "rotated-" + tenant.password
    resp = await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/api-accounts/{tenant.account}",
        json={"password": new, "daily_limit": None},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    rotated = time.monotonic()
    tenant.password = new

    async def new_accepted() -> bool:
        return await pipeline.submit(tenant, ExternalID="after") == "0"

    # Polled every 0.45 s: at most four refusals before the deadline, under the five wrong
    # passwords after which the ingest stops checking this account's passwords for a while.
    await wait_for(new_accepted, timeout=2.0, interval=0.45, what="the new password accepted")
    assert time.monotonic() - rotated < 2.0
    tenant.password = old
    assert await pipeline.submit(tenant, ExternalID="old") == str(PASSWORD_WRONG)
    tenant.password = new
    stored = await pipeline.wait_stored(tenant, 2)
    assert sorted(r["external_id"] for r in stored) == ["after", "before"]

"""`GET /v1/cdrs` in process: each filter, times in the tenant's zone, cursor paging, and
the ways an API account can (and cannot) sign in."""

from __future__ import annotations

import pytest

from tests.helpers import Tenant
from tests.inprocess.conftest import Pipeline

SENT = {
    # external id: submitted fields (the tenant is in America/New_York)
    "a": {"StartDateTime": "2026-03-01 10:00:00"},
    "b": {"StartDateTime": "2026-03-02 10:00:00", "Duration": "0"},
    "c": {"StartDateTime": "2026-03-03 10:00:00", "OriginatingNumber": "555"},
    "d": {"StartDateTime": "2026-03-04 10:00:00", "DestinationNumber": "12125550100"},
}


@pytest.fixture
async def ny_tenant(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.tenant(timezone="America/New_York")
    for external_id, fields in SENT.items():
        assert await pipeline.submit(tenant, ExternalID=external_id, **fields) == "0"
    await pipeline.wait_stored(tenant, len(SENT))
    return tenant


async def _ids(pipeline: Pipeline, tenant: Tenant, **params: object) -> list[str]:
    return [r["external_id"] for r in await pipeline.stored(tenant, **params)]


async def test_each_filter_selects_its_records(pipeline: Pipeline, ny_tenant: Tenant) -> None:
    t = ny_tenant
    assert await _ids(pipeline, t) == ["a", "b", "c", "d"]  # feed order
    # Times without an offset are New York times: 2026-03-02 00:00 is 05:00 UTC.
    assert await _ids(pipeline, t, **{"from": "2026-03-02T00:00:00", "to": "2026-03-04T00:00:00"})
    assert await _ids(
        pipeline, t, **{"from": "2026-03-02T00:00:00", "to": "2026-03-04T00:00:00"}
    ) == ["b", "c"]
    assert await _ids(pipeline, t, **{"from": "2026-03-04T14:59:00Z"}) == ["d"]
    assert await _ids(pipeline, t, **{"from": "2026-03-04T15:00:01Z"}) == []
    assert await _ids(pipeline, t, rated="false") == ["c"]
    assert await _ids(pipeline, t, rated="true") == ["a", "b", "d"]
    assert await _ids(pipeline, t, call_type="I") == ["a", "b"]
    assert await _ids(pipeline, t, disposition="NO ANSWER") == ["b"]
    assert await _ids(pipeline, t, caller="55") == ["c"]
    assert await _ids(pipeline, t, destination="1212") == ["d"]
    (a,) = await pipeline.stored(t, caller="100", destination="1613", disposition="ANSWERED")
    assert a["start_time"] == "2026-03-01T10:00:00-05:00"  # shown in the tenant's zone
    assert a["time"] == 1772377200


async def test_cursor_pages_through_everything_once(pipeline: Pipeline, ny_tenant: Tenant) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, object] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        resp = await pipeline.notifier.get(
            "/v1/cdrs", params=params, auth=(ny_tenant.login, ny_tenant.password)
        )
        page = resp.json()
        seen += [r["external_id"] for r in page["cdrs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "1900-01-01T00:00:00Z"}, "time 1900-01-01T00:00:00+00:00 is outside 1970-2100"),
        ({"to": "2200-01-01T00:00:00"}, "is outside 1970-2100"),
        ({"limit": "0"}, "limit:"),
        ({"cursor": "-1"}, "cursor:"),
    ],
)
async def test_bad_query_parameters_are_422(
    pipeline: Pipeline, tenant: Tenant, params: dict, message: str
) -> None:
    resp = await pipeline.notifier.get(
        "/v1/cdrs", params=params, auth=(tenant.login, tenant.password)
    )
    assert resp.status_code == 422
    assert message in resp.json()["message"]


async def test_login_parameters_sign_in_like_basic_auth(pipeline: Pipeline, tenant: Tenant) -> None:
    by_params = await pipeline.notifier.get(
        "/v1/cdrs", params={"login": tenant.login, "password": tenant.password}
    )
    assert by_params.status_code == 200 and by_params.json() == {"cdrs": [], "next_cursor": None}
    garbled = await pipeline.notifier.get("/v1/cdrs", headers={"authorization": "Basic %%%"})
    assert garbled.status_code == 401 and garbled.json()["code"] == 50443
    no_account = await pipeline.notifier.get(
        "/v1/cdrs", params={"login": tenant.database_id, "password": tenant.password}
    )
    assert no_account.status_code == 401 and no_account.json()["code"] == 50440
    no_password = await pipeline.notifier.get("/v1/cdrs", params={"login": tenant.login})
    assert no_password.status_code == 401 and no_password.json()["code"] == 50300

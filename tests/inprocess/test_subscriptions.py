"""Subscription endpoints in process: secrets (generated once, or the caller's own), updates,
reads without the secret, validation, and paging through deliveries."""

from __future__ import annotations

import base64

from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, verify_signature, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OWN_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def _url(tenant: Tenant, sub: str = "crm") -> str:
    return f"/v1/admin/tenants/{tenant.database_id}/subscriptions/{sub}"


async def _stored_secret(pipeline: Pipeline, tenant: Tenant) -> str:
    (row,) = await pipeline.sql(
        "SELECT secret FROM subscription WHERE database_id = $1", tenant.database_id
    )
    return row["secret"]  # type: ignore[no-any-return]


async def test_a_generated_secret_is_shown_once_and_kept_on_update(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    created = await pipeline.subscribe(tenant, "http://127.0.0.1:9/a", format="form")
    assert created["secret"] == await _stored_secret(pipeline, tenant)
    updated = await pipeline.subscribe(
        tenant, "http://127.0.0.1:9/b", format="xmlrpc", xmlrpc_method="crm.push"
    )
    assert "secret" not in updated
    assert await _stored_secret(pipeline, tenant) == created["secret"]
    shown = (await pipeline.notifier.get(_url(tenant), headers=AUTH)).json()
    assert shown == {
        "database_id": tenant.database_id,
        "subscription_id": "crm",
        "url": "http://127.0.0.1:9/b",
        "format": "xmlrpc",
        "filter": {},
        "enabled": True,
        "max_attempts": 10,
        "xmlrpc_method": "crm.push",
    }


async def test_the_callers_own_secret_signs_the_pushes(pipeline: Pipeline, tenant: Tenant) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        answer = await pipeline.subscribe(tenant, receiver.url, secret=OWN_SECRET)
        assert "secret" not in answer  # nothing generated, nothing to show
        assert await pipeline.submit(tenant) == "0"
        await wait_for(lambda: receiver.requests, what="the push")
        headers, body = receiver.requests[0]
        assert verify_signature(OWN_SECRET, headers, body)
    finally:
        await receiver.stop()


async def test_invalid_subscriptions_are_422_or_404(pipeline: Pipeline, tenant: Tenant) -> None:
    cases = [
        ({"url": "http://127.0.0.1:9/", "secret": "not-a-secret"}, "secret must be whsec_"),
        ({"url": "http://127.0.0.1:9/", "secret": "whsec_c2hvcnQ="}, "24 to 64 bytes"),
        ({"url": "http://127.0.0.1:9/", "secret": "whsec_!!!"}, "secret must be whsec_"),
        ({"url": "ftp://example.com/x"}, "push URL must be http(s)://host/..."),
        ({"url": "http://127.0.0.1:9/", "format": "xml"}, "format:"),
        ({"url": "http://127.0.0.1:9/", "max_attempts": 0}, "max_attempts:"),
        ({"url": "http://127.0.0.1:9/", "filter": {"colour": ["red"]}}, "filter.colour:"),
        # The method name goes into the XML as it is: a dotted name, nothing else.
        ({"url": "http://127.0.0.1:9/", "xmlrpc_method": "a</methodName><x>"}, "xmlrpc_method:"),
        ({"url": "http://127.0.0.1:9/", "xmlrpc_method": "cdr notify"}, "xmlrpc_method:"),
        ({"url": "http://127.0.0.1:9/", "xmlrpc_method": ".cdr"}, "xmlrpc_method:"),
    ]
    for body, message in cases:
        resp = await pipeline.notifier.put(_url(tenant), json=body, headers=AUTH)
        assert resp.status_code == 422, body
        assert message in resp.json()["message"], (body, resp.json())
    unknown = await pipeline.notifier.put(
        "/v1/admin/tenants/NOPE_DB/subscriptions/crm",
        json={"url": "http://127.0.0.1:9/"},
        headers=AUTH,
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "tenant 'NOPE_DB' not found"}
    no_token = await pipeline.notifier.get(_url(tenant))
    assert no_token.status_code == 401


async def test_deliveries_page_newest_first_by_before_id(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        await pipeline.subscribe(tenant, receiver.url)
        for n in range(3):
            assert await pipeline.submit(tenant, ExternalID=f"p{n}") == "0"
        await wait_for(lambda: len(receiver.requests) == 3, what="three pushes")
    finally:
        await receiver.stop()
    everything = await pipeline.deliveries(tenant)
    ids = [d["id"] for d in everything]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    seen: list[int] = []
    before = None
    for _ in range(4):
        params: dict[str, object] = {"limit": 2}
        if before is not None:
            params["before_id"] = before
        page = (
            await pipeline.notifier.get(f"{_url(tenant)}/deliveries", params=params, headers=AUTH)
        ).json()
        seen += [d["id"] for d in page["deliveries"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert seen == ids
    bad = await pipeline.notifier.get(
        f"{_url(tenant)}/deliveries", params={"status": "lost"}, headers=AUTH
    )
    assert bad.status_code == 422

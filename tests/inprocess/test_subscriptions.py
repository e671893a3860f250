"""Subscription endpoints in process: secrets (generated once, or the caller's own), updates,
reads without the secret, validation, and paging through deliveries."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cdr_notifier.secretbox import SecretBox
from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, verify_signature, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OWN_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def _url(tenant: Tenant, sub: str = "crm") -> str:
    return f"/v1/admin/tenants/{tenant.database_id}/subscriptions/{sub}"


BOX = SecretBox([], admin_token=ADMIN_TOKEN)  # the notifier's, as it runs here: no keys set


async def _stored_secret(pipeline: Pipeline, tenant: Tenant) -> str:
    """The secret the subscription holds, checking it is stored encrypted, never in clear."""
    (row,) = await pipeline.sql(
        "SELECT secret FROM subscription WHERE database_id = $1", tenant.database_id
    )
    sealed: str = row["secret"]
    assert not sealed.startswith("whsec_") and "whsec_" not in sealed
    return BOX.open(sealed)


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


async def test_a_rotated_secret_signs_beside_the_previous_one_for_a_day(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    old = (await pipeline.subscribe(tenant, receiver.url))["secret"]
    resp = await pipeline.notifier.post(f"{_url(tenant)}/rotate-secret", headers=AUTH)
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    new = rotated["secret"]
    assert new != old and new == await _stored_secret(pipeline, tenant)
    until = datetime.fromisoformat(rotated["previous_valid_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)

    assert await pipeline.submit(tenant, ExternalID="during") == "0"
    await wait_for(lambda: len(receiver.requests) >= 1, what="the push during the overlap")
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify_signature(new, headers, body) and verify_signature(old, headers, body)

    # After the overlap only the new secret signs.
    await pipeline.sql(
        "UPDATE subscription SET previous_secret_until = now() - interval '1 second'"
        " WHERE database_id = $1",
        tenant.database_id,
    )
    assert await pipeline.submit(tenant, ExternalID="after") == "0"
    await wait_for(lambda: len(receiver.requests) >= 2, what="the push after the overlap")
    headers, body = receiver.requests[1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verify_signature(new, headers, body) and not verify_signature(old, headers, body)


async def test_a_put_with_another_secret_rotates_and_the_same_one_changes_nothing(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    first = await pipeline.subscribe(tenant, "http://127.0.0.1:9/a", secret=OWN_SECRET)
    assert "secret" not in first
    await pipeline.subscribe(tenant, "http://127.0.0.1:9/a", secret=OWN_SECRET)
    (row,) = await pipeline.sql(
        "SELECT previous_secret FROM subscription WHERE database_id = $1", tenant.database_id
    )
    assert row["previous_secret"] is None
    other = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
    await pipeline.subscribe(tenant, "http://127.0.0.1:9/a", secret=other)
    (row,) = await pipeline.sql(
        "SELECT previous_secret, previous_secret_until FROM subscription WHERE database_id = $1",
        tenant.database_id,
    )
    assert BOX.open(row["previous_secret"]) == OWN_SECRET
    assert row["previous_secret_until"] > datetime.now(UTC) + timedelta(hours=23)
    assert await _stored_secret(pipeline, tenant) == other


async def test_subscriptions_are_listed_and_deleted_with_their_deliveries(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    for name in ("b", "a"):
        await pipeline.subscribe(tenant, receiver.url, name)
    listed = await pipeline.notifier.get(
        f"/v1/admin/tenants/{tenant.database_id}/subscriptions", headers=AUTH
    )
    assert [s["subscription_id"] for s in listed.json()["subscriptions"]] == ["a", "b"]
    assert all("secret" not in s for s in listed.json()["subscriptions"])
    assert await pipeline.submit(tenant) == "0"
    await wait_for(lambda: len(receiver.requests) >= 2, what="a push to each")
    await wait_for(
        lambda: pipeline.deliveries(tenant, "a", status="delivered"), what="a's delivery written"
    )

    gone = await pipeline.notifier.delete(_url(tenant, "a"), headers=AUTH)
    assert gone.status_code == 204
    assert (await pipeline.notifier.get(_url(tenant, "a"), headers=AUTH)).status_code == 404
    assert (await pipeline.notifier.delete(_url(tenant, "a"), headers=AUTH)).status_code == 404
    rows = await pipeline.sql(
        "SELECT subscription_id FROM delivery WHERE database_id = $1", tenant.database_id
    )
    assert [r["subscription_id"] for r in rows] == ["b"]
    missing = await pipeline.notifier.get("/v1/admin/tenants/NOPE_DB/subscriptions", headers=AUTH)
    assert missing.status_code == 404

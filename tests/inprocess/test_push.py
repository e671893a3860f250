"""Pushes through the whole pipeline in one process: ingest app -> Tansu -> rater app ->
PostgreSQL -> notifier app -> a real receiver on loopback. Signatures, retries, `dead`,
Retry-After, replay and subscription filters (contract §4)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import orjson
import pytest

from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, verify_signature, wait_for
from tests.inprocess.conftest import Pipeline

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OK = (200, '{"Err":0,"Errdesc":"OK"}', {"content-type": "application/json"})


async def _delivered(pipeline: Pipeline, tenant: Tenant, n: int = 1, **kw: Any) -> list[dict]:
    async def done() -> list[dict]:
        found = await pipeline.deliveries(tenant, status="delivered", **kw)
        return found if len(found) >= n else []

    return await wait_for(done, timeout=30, what=f"{n} delivered")


async def test_seed_sample_is_priced_and_pushed_with_a_valid_signature(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.delay = lambda n: 0.3  # a CRM that takes 300 ms: the latency must show it
    sub = await pipeline.subscribe(tenant, receiver.url)
    assert sub["secret"].startswith("whsec_")
    assert sub["filter"] == {} and sub["max_attempts"] == 10 and sub["enabled"] is True
    before = datetime.now(UTC)
    answer = await pipeline.submit(
        tenant, ExternalID="53453454.54", StartDateTime="2008-Jan-01 12:12:59"
    )
    assert answer == "0"

    await wait_for(lambda: receiver.requests, what="the push", timeout=30)
    headers, body = receiver.requests[0]
    assert verify_signature(sub["secret"], headers, body)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "cdrflow-notifier/0.1"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    record = orjson.loads(body)
    # 1613 at 0.015/min, 60 s increments: 90 s bills 120 s; route 0.0052/min in 6 s: 90 s.
    assert record["total"] == "0.03000000" and record["price"] == 3
    assert record["billed_seconds"] == 120 and record["cost"] == "0.00780000"
    assert record["rate"] == "0.01500000" and record["currency"] == "USD"
    assert record["ivruniqueid"] == "53453454.54"
    assert record["caller"] == "100" and record["target"] == "16138220000"
    assert record["start_time"] == "2008-01-01T12:12:59+00:00"
    assert record["time"] == 1199189579
    assert record["destination_name"] == "Canada - 613 Ottawa"
    assert record["call_type"] == "I" and record["call_billing"] == "billed"
    assert record["status"] == "ANSWER" and record["type"] == "Extension Outgoing"
    assert record["account"] == "100000_VoIP" and record["extension"] == "100"
    assert record["rated"] is True and record["unrated_reason"] is None
    assert record["database_id"] == tenant.database_id

    (delivery,) = await _delivered(pipeline, tenant)
    assert delivery["cdr_id"] == record["cdr_id"]
    assert delivery["webhook_id"] == headers["webhook-id"]
    (attempt,) = delivery["attempts"]
    assert attempt["http_status"] == 200 and attempt["error"] is None
    assert 300 <= attempt["latency_ms"] < 5000  # the CRM's 300 ms, under the push timeout
    assert before <= datetime.fromisoformat(attempt["at"]) <= datetime.now(UTC)


async def test_failed_push_is_retried_with_the_same_webhook_id(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    # First answer: HTTP 200 but Err=1 (a failed attempt by seed 003); then success.
    receiver.reply = lambda n: (
        (200, '{"Err":1,"Errdesc":"parse"}', {"content-type": "application/json"}) if n == 1 else OK
    )
    await pipeline.subscribe(tenant, receiver.url)
    assert await pipeline.submit(tenant) == "0"
    (delivery,) = await _delivered(pipeline, tenant)
    assert len(receiver.requests) == 2
    first, second = receiver.requests[0][0], receiver.requests[1][0]
    assert first["webhook-id"] == second["webhook-id"] == delivery["webhook_id"]
    assert first["webhook-timestamp"] <= second["webhook-timestamp"]
    assert [(a["http_status"], a["error"]) for a in delivery["attempts"]] == [
        (200, "Err=1 parse"),
        (200, None),
    ]


async def test_a_delivery_is_dead_after_max_attempts_and_a_replay_revives_it(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    healthy = False
    receiver.reply = lambda n: OK if healthy else (500, "boom", {})
    await pipeline.subscribe(tenant, receiver.url, max_attempts=3)
    assert await pipeline.submit(tenant) == "0"

    async def dead() -> list[dict]:
        return await pipeline.deliveries(tenant, status="dead")

    (delivery,) = await wait_for(dead, timeout=30, what="the delivery to go dead")
    # Exactly max_attempts pushes, all of one delivery, each recorded; then no more.
    assert len(receiver.requests) == 3
    assert {h["webhook-id"] for h, _ in receiver.requests} == {delivery["webhook_id"]}
    assert [(a["http_status"], a["error"]) for a in delivery["attempts"]] == [(500, "HTTP 500")] * 3
    times = [a["at"] for a in delivery["attempts"]]
    assert times == sorted(times) and len(set(times)) == 3
    assert await pipeline.deliveries(tenant, status="pending") == []

    healthy = True
    url = (
        f"/v1/admin/tenants/{tenant.database_id}/subscriptions/crm"
        f"/deliveries/{delivery['id']}/replay"
    )
    replayed = await pipeline.notifier.post(url, headers=AUTH)
    assert replayed.json() == {"id": delivery["id"], "status": "pending"}
    (revived,) = await _delivered(pipeline, tenant)
    assert revived["id"] == delivery["id"]
    assert len(receiver.requests) == 4
    assert receiver.requests[3][0]["webhook-id"] == delivery["webhook_id"]
    assert [a["http_status"] for a in revived["attempts"]] == [500, 500, 500, 200]


@pytest.mark.parametrize(
    ("form", "status"), [("seconds", 503), ("http-date", 503), ("seconds", 429)]
)
async def test_retry_after_is_honoured_from_when_the_answer_came(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver, form: str, status: int
) -> None:
    # A slow CRM (1 s) answers 503 with Retry-After: the next attempt must not come before
    # the time it names, counted from its answer, not from when the push began.
    not_before: list[float] = []

    def reply(n: int) -> tuple[int, str, dict[str, str]]:
        if n > 1:
            return OK
        if form == "seconds":
            return status, "busy", {"Retry-After": "2"}
        when = int(time.time()) + 3  # whole seconds: an HTTP date has no fractions
        not_before.append(when)
        return status, "busy", {"Retry-After": formatdate(when, usegmt=True)}

    receiver.reply = reply
    receiver.delay = lambda n: 1.0 if n == 1 else 0.0
    await pipeline.subscribe(tenant, receiver.url)
    assert await pipeline.submit(tenant) == "0"
    (delivery,) = await _delivered(pipeline, tenant)
    if form == "seconds":
        not_before.append(receiver.answered[0] + 2)
    assert receiver.arrivals[1] >= not_before[0]
    # Honoured, not exceeded by much: the retry base is 0.1 s, the dispatcher idles <= 0.5 s.
    assert receiver.arrivals[1] < not_before[0] + 2
    assert [(a["http_status"], a["error"]) for a in delivery["attempts"]] == [
        (status, f"HTTP {status}"),
        (200, None),
    ]


async def test_replay_since_pushes_again_with_the_same_webhook_ids(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    await pipeline.subscribe(tenant, receiver.url)
    since = datetime.now(UTC) - timedelta(seconds=5)
    for n in range(2):
        assert await pipeline.submit(tenant, ExternalID=f"rs{n}") == "0"
    first = await _delivered(pipeline, tenant, 2)
    ids = {d["webhook_id"] for d in first}
    assert {h["webhook-id"] for h, _ in receiver.requests} == ids

    url = f"/v1/admin/tenants/{tenant.database_id}/subscriptions/crm/replay"
    later = await pipeline.notifier.post(
        url, json={"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, headers=AUTH
    )
    assert later.json() == {"replayed": 0}
    replayed = await pipeline.notifier.post(url, json={"since": since.isoformat()}, headers=AUTH)
    assert replayed.json() == {"replayed": 2}
    await wait_for(lambda: len(receiver.requests) == 4, timeout=30, what="two more pushes")
    assert {h["webhook-id"] for h, _ in receiver.requests[2:]} == ids
    again = await _delivered(pipeline, tenant, 2)
    assert sorted(len(d["attempts"]) for d in again) == [2, 2]

    naive = await pipeline.notifier.post(url, json={"since": "2026-01-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 422  # a time without an offset is ambiguous


async def test_replay_of_unknown_deliveries_and_subscriptions_is_404(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    base = f"/v1/admin/tenants/{tenant.database_id}/subscriptions"
    one = await pipeline.notifier.post(f"{base}/nosuch/deliveries/1/replay", headers=AUTH)
    assert one.status_code == 404
    assert one.json() == {"message": "delivery 1 not found in subscription 'nosuch'"}
    since = await pipeline.notifier.post(
        f"{base}/nosuch/replay", json={"since": "2026-01-01T00:00:00Z"}, headers=AUTH
    )
    assert since.status_code == 404
    listing = await pipeline.notifier.get(f"{base}/nosuch/deliveries", headers=AUTH)
    assert listing.status_code == 404
    shown = await pipeline.notifier.get(f"{base}/nosuch", headers=AUTH)
    assert shown.json() == {
        "message": f"subscription 'nosuch' of tenant {tenant.database_id!r} not found"
    }


async def test_subscription_filters_choose_which_records_are_pushed(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/api-accounts/ACC2",
        json={"password": "pw2"},
        headers=AUTH,
    )
    filters: dict[str, dict[str, list[str]]] = {
        "all": {},
        "intl": {"call_types": ["I"]},
        "missed": {"statuses": ["NO ANSWER"]},
        "answered": {"statuses": ["ANSWER"], "call_types": ["I"]},
        "acc2": {"api_accounts": [f"{tenant.database_id}/ACC2"]},
        "acc2short": {"api_accounts": ["ACC2"]},
    }
    receivers = {name: Receiver() for name in filters}
    try:
        for name, crm in receivers.items():
            await crm.start()
            sub = await pipeline.subscribe(tenant, crm.url, name, filter=filters[name])
            assert sub["filter"] == filters[name]
        sent = [
            ("canada", {"ExternalID": "canada"}),  # I, answered, ACC
            ("missed", {"ExternalID": "missed", "Duration": "0"}),  # I, NO ANSWER, ACC
            (
                "acc2",
                {
                    "ExternalID": "acc2",
                    "DestinationNumber": "12125550100",  # within the US: not I
                    "APIAccountID": "ACC2",
                    "APIPassword": "pw2",
                },
            ),
        ]
        for _, fields in sent:
            assert await pipeline.submit(tenant, **fields) == "0"
        stored = {r["cdr_id"]: r["external_id"] for r in await pipeline.wait_stored(tenant, 3)}
        await wait_for(lambda: len(receivers["all"].requests) == 3, what="the unfiltered pushes")

        async def recorded(name: str) -> set[str]:
            return {stored[d["cdr_id"]] for d in await pipeline.deliveries(tenant, name)}

        expected = {
            "all": {"canada", "missed", "acc2"},
            "intl": {"canada", "missed"},
            "missed": {"missed"},
            "answered": {"canada"},
            "acc2": {"acc2"},
            "acc2short": {"acc2"},
        }
        # Each record's deliveries are written for every subscription in one transaction, so
        # once "all" has all three, the others' rows are final.
        assert {name: await recorded(name) for name in filters} == expected
        for name, crm in receivers.items():
            await wait_for(
                lambda crm=crm, name=name: len(crm.requests) == len(expected[name]),
                what=f"pushes of {name}",
            )
            pushed = {orjson.loads(body)["external_id"] for _, body in crm.requests}
            assert pushed == expected[name], name
    finally:
        for crm in receivers.values():
            await crm.stop()


async def test_cdrs_are_visible_only_to_their_own_tenant(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    other = await pipeline.tenant()
    assert await pipeline.submit(tenant) == "0"
    assert len(await pipeline.wait_stored(tenant, 1)) == 1
    theirs = await pipeline.notifier.get("/v1/cdrs", auth=(other.login, other.password))
    assert theirs.status_code == 200 and theirs.json()["cdrs"] == []
    # Another tenant's password never opens this tenant.
    crossed = await pipeline.notifier.get("/v1/cdrs", auth=(tenant.login, other.password))
    assert crossed.status_code == 401 and crossed.json()["code"] == 50390
    assert crossed.headers["www-authenticate"] == "Basic"


@pytest.mark.parametrize(
    "reply",
    [
        (200, "Err=1&Errdesc=%00boom", {"content-type": "application/x-www-form-urlencoded"}),
        (200, '{"Err":1,"Errdesc":"\\u0000boom"}', {"content-type": "application/json"}),
    ],
)
async def test_a_crm_reply_carrying_a_nul_byte_is_logged_and_pushing_goes_on(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver, reply: tuple[int, str, dict]
) -> None:
    """The reply's text goes into the attempt log, which PostgreSQL text cannot hold with NUL:
    it used to stall the dispatcher for every tenant, retrying the write forever."""
    receiver.reply = lambda n: reply if n == 1 else OK
    await pipeline.subscribe(tenant, receiver.url)
    assert await pipeline.submit(tenant) == "0"
    (delivery,) = await _delivered(pipeline, tenant)
    assert [(a["http_status"], a["error"]) for a in delivery["attempts"]] == [
        (200, "Err=1 \\x00boom"),
        (200, None),
    ]


async def test_a_cookie_one_crm_sets_is_never_sent_with_a_later_push(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    # Cookies are kept per host name, not per port nor per tenant: a jar shared by every push
    # would hand one tenant's CRM session to another tenant's CRM on the same host.
    receiver.reply = lambda n: (200, '{"Err":0}', {"set-cookie": f"sid=session-{n}; Path=/"})
    url = receiver.url.replace("127.0.0.1", "localhost")
    first, second = await pipeline.tenant(), await pipeline.tenant()
    await pipeline.subscribe(first, url)
    await pipeline.subscribe(second, url)
    assert await pipeline.submit(first) == "0"
    await _delivered(pipeline, first)
    assert await pipeline.submit(second) == "0"
    await _delivered(pipeline, second)
    assert await pipeline.submit(first, ExternalID="again") == "0"
    await _delivered(pipeline, first, n=2)

    assert len(receiver.requests) == 3
    assert [headers.get("cookie") for headers, _ in receiver.requests] == [None, None, None]

"""Quote and explain in process (contract §3 beyond the contract: issue 9 item 6): the seed-002
worked example quoted with its arithmetic, no side effects, stored explanations that survive a
deck replacement, the revision history, tenant isolation and the account's credentials."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, wait_for
from tests.inprocess.conftest import Pipeline

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
SEED_002 = {
    "originating_number": "100",
    "destination_number": "14185550100",
    "start_time": "2026-03-01T10:00:00",
    "duration": 11,
}


async def quote(pipeline: Pipeline, tenant: Tenant, **call: Any) -> httpx.Response:
    return await pipeline.rater.post(
        "/v1/rate/quote", json={**SEED_002, **call}, auth=(tenant.login, tenant.password)
    )


async def explain(pipeline: Pipeline, tenant: Tenant, cdr_id: str) -> httpx.Response:
    return await pipeline.rater.get(
        f"/v1/cdrs/{cdr_id}/explain", auth=(tenant.login, tenant.password)
    )


async def stored_one(pipeline: Pipeline, tenant: Tenant, external_id: str) -> dict[str, Any]:
    found = await pipeline.wait_stored(tenant, 1, caller="100")
    (record,) = [r for r in found if r["external_id"] == external_id]
    return record


async def test_quote_of_the_seed_002_example_answers_price_cost_and_arithmetic(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    resp = await quote(pipeline, tenant)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == "0.01500000" and body["cost"] == "0.00104000"
    assert body["margin"] == "0.01396000" and body["currency"] == "USD"
    assert body["billed_seconds"] == 60 and body["rate"] == "0.01500000"
    assert body["call_type"] == "I" and body["call_billing"] == "billed"
    assert body["matched_prefix"] == "1418"
    assert body["destination_name"] == "Canada - 418 Quebec City"
    how = body["explanation"]
    assert how["package"] == {
        "id": tenant.package,
        "why": "extension",
        "extension": "100",
        "route": tenant.route,
    }
    assert how["normalized_number"] == "14185550100"
    sell, termination = how["sell"], how["termination"]
    assert sell["arithmetic"] == "0.00000000 + 0.01500000 * 60 / 60 = 0.01500000"
    assert sell["increments"]["rule"] == "11 s <= initial 60 s: billed 60 s"
    assert sell["line"]["prefix"] == "1418" and sell["line"]["effective_from"] is None
    assert termination["arithmetic"] == "0.00000000 + 0.00520000 * 12 / 60 = 0.00104000"
    assert termination["increments"] == {
        "duration": 11,
        "answered": True,
        "initial_increment": 6,
        "increment": 6,
        "further_increments": 1,
        "billed_seconds": 12,
        "rule": "6 + ceil((11 - 6) / 6) * 6 = 12 s",
    }
    # The 55 s call of the same example: the same price, cost over 60 billed seconds.
    longer = (await quote(pipeline, tenant, duration=55)).json()
    assert (longer["total"], longer["cost"]) == ("0.01500000", "0.00520000")


async def test_quote_explains_unpriced_and_free_calls(pipeline: Pipeline, tenant: Tenant) -> None:
    no_rate = (await quote(pipeline, tenant, destination_number="011442071234567")).json()
    assert no_rate["rated"] is False and no_rate["unrated_reason"] == "no_rate"
    assert no_rate["total"] is None and no_rate["explanation"]["sell"] is None
    no_package = (await quote(pipeline, tenant, originating_number="555")).json()
    assert no_package["unrated_reason"] == "no_package"
    assert no_package["explanation"]["package"]["why"] == "none"
    inbound = (
        await quote(pipeline, tenant, originating_number="14185550100", destination_number="100")
    ).json()
    assert inbound["rated"] is True and inbound["total"] == "0.00000000"
    assert inbound["call_type"] == "IB" and inbound["call_billing"] == "free"
    assert inbound["explanation"]["free_because"] == "no_inbound_line"
    unanswered = (await quote(pipeline, tenant, duration=0)).json()
    assert unanswered["total"] == "0.00000000" and unanswered["billed_seconds"] == 0
    assert unanswered["explanation"]["call"]["disposition"] == "NO ANSWER"
    assert unanswered["explanation"]["sell"]["arithmetic"] == "billed 0 s: 0.00000000"


async def test_quote_uses_the_default_package_and_says_so(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    account = f"/v1/admin/tenants/{tenant.database_id}/api-accounts/{tenant.account}"
    body = {"password": tenant.password, "daily_limit": None, "default_package": tenant.package}
    (await pipeline.rater.put(account, json=body, headers=ADMIN)).raise_for_status()
    answer = (await quote(pipeline, tenant, originating_number="555")).json()
    assert answer["total"] == "0.01500000"
    assert answer["explanation"]["package"]["why"] == "default_package"
    assert answer["explanation"]["package"]["extension"] is None


async def test_quote_reads_a_time_without_offset_in_the_tenants_zone(
    pipeline: Pipeline,
) -> None:
    tenant = await pipeline.tenant(timezone="America/New_York")
    how = (await quote(pipeline, tenant)).json()["explanation"]
    assert how["call"]["start_time"] == "2026-03-01T10:00:00-05:00"
    out_of_range = await quote(pipeline, tenant, start_time="1900-01-01T00:00:00")
    assert out_of_range.status_code == 422
    assert "1970-2100" in out_of_range.json()["message"]


async def test_quote_stores_nothing_and_sends_nothing(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    await pipeline.subscribe(tenant, receiver.url)
    for duration in (0, 11, 55, 3600):
        assert (await quote(pipeline, tenant, duration=duration)).status_code == 200
    # A real call after the quotes: its event follows any the quotes could have sent on the
    # tenant's partition, so once it is delivered, a quote's event would have been too.
    assert await pipeline.submit(tenant, ExternalID="after-quotes") == "0"
    await wait_for(lambda: receiver.requests, what="the real call's push")
    deliveries = await pipeline.deliveries(tenant)
    assert len(deliveries) == 1 and len(receiver.requests) == 1
    assert orjson.loads(receiver.requests[0][1])["external_id"] == "after-quotes"
    rows = await pipeline.sql("SELECT count(*) FROM cdr WHERE database_id = $1", tenant.database_id)
    assert rows[0][0] == 1


async def test_explain_matches_the_stored_price_after_the_deck_is_replaced(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert (
        await pipeline.submit(tenant, ExternalID="x1", StartDateTime="2026-03-01 10:00:00") == "0"
    )
    record = await stored_one(pipeline, tenant, "x1")
    deck = f"/v1/admin/tenants/{tenant.database_id}/packages/{tenant.package}/rates"
    replaced = "prefix,destination,rate,increment\n1613,Ottawa (new),0.09,30\n"
    resp = await pipeline.rater.put(
        deck, content=replaced, headers={**ADMIN, "content-type": "text/csv"}
    )
    resp.raise_for_status()

    body = (await explain(pipeline, tenant, record["cdr_id"])).json()
    assert body["cdr_id"] == record["cdr_id"] and body["revision"] == 1
    assert body["total"] == record["total"] == "0.03000000"
    assert body["cost"] == record["cost"] == "0.00780000"
    assert body["history"] == []
    how = body["explanation"]
    assert how["total"] == record["total"] and how["cost"] == record["cost"]
    assert how["matched_prefix"] == record["matched_prefix"] == "1613"
    # The line as it was when the call was priced, not the deck of now.
    assert how["sell"]["line"]["destination"] == "Canada - 613 Ottawa"
    assert how["sell"]["arithmetic"] == "0.00000000 + 0.01500000 * 120 / 60 = 0.03000000"
    assert how["sell"]["increments"]["rule"] == "60 + ceil((90 - 60) / 60) * 60 = 120 s"
    assert how["termination"]["arithmetic"] == "0.00000000 + 0.00520000 * 90 / 60 = 0.00780000"
    # While a quote of the same call prices on the new line.
    now = await quote(
        pipeline,
        tenant,
        destination_number="16138220000",
        duration=90,
        start_time="2026-03-01T10:00:00",
    )
    assert now.json()["total"] == "0.13500000"  # 0.09 * 90 s / 60


async def test_explain_lists_the_revision_history(pipeline: Pipeline, tenant: Tenant) -> None:
    assert await pipeline.submit(tenant, ExternalID="h1") == "0"
    record = await stored_one(pipeline, tenant, "h1")
    old, new = {"total": "0.03000000"}, {"total": "0.04000000"}
    for revision, reason in ((3, "rerate"), (2, "config_changed")):
        await pipeline.sql(
            "INSERT INTO cdr_revision (cdr_id, database_id, revision, reason, old, new) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.UUID(record["cdr_id"]),
            tenant.database_id,
            revision,
            reason,
            orjson.dumps(old).decode(),
            orjson.dumps(new).decode(),
        )
    history = (await explain(pipeline, tenant, record["cdr_id"])).json()["history"]
    assert [(h["revision"], h["reason"]) for h in history] == [(2, "config_changed"), (3, "rerate")]
    assert history[0]["old"] == old and history[0]["new"] == new


async def test_another_tenants_record_is_404(pipeline: Pipeline, tenant: Tenant) -> None:
    other = await pipeline.tenant()
    assert await pipeline.submit(tenant, ExternalID="mine") == "0"
    record = await stored_one(pipeline, tenant, "mine")
    assert (await explain(pipeline, tenant, record["cdr_id"])).status_code == 200
    theirs = await explain(pipeline, other, record["cdr_id"])
    assert theirs.status_code == 404
    assert theirs.json() == {"message": f"no CDR {record['cdr_id']}"}
    assert (await explain(pipeline, tenant, str(uuid.uuid4()))).status_code == 404


async def test_another_tenants_deck_does_not_price_my_quote(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    other = await pipeline.tenant()
    deck = f"/v1/admin/tenants/{other.database_id}/packages/{other.package}/rates"
    resp = await pipeline.rater.put(
        deck, content="prefix,rate\n1418,0.5\n", headers={**ADMIN, "content-type": "text/csv"}
    )
    resp.raise_for_status()
    assert (await quote(pipeline, other)).json()["total"] == "0.50000000"
    assert (await quote(pipeline, tenant)).json()["total"] == "0.01500000"


@pytest.mark.parametrize("route", ["quote", "explain"])
async def test_wrong_or_missing_credentials_are_401_with_the_contract_code(
    pipeline: Pipeline, tenant: Tenant, route: str
) -> None:
    async def call(auth: Any) -> httpx.Response:
        if route == "quote":
            return await pipeline.rater.post("/v1/rate/quote", json=SEED_002, auth=auth)
        return await pipeline.rater.get(f"/v1/cdrs/{uuid.uuid4()}/explain", auth=auth)

    cases = [
        (None, 50443),
        ((f"NOPE{uuid.uuid4().hex[:6]}/ACC", "x"), 50443),
        ((f"{tenant.database_id}/NOBODY", "x"), 50440),
        ((tenant.login, ""), 50300),
        ((tenant.login, "wrong-password"), 50390),
    ]
    for auth, code in cases:
        resp = await call(auth)
        assert resp.status_code == 401, (auth, resp.text)
        assert resp.json()["code"] == code
        assert resp.headers["www-authenticate"] == "Basic"
    # The admin token is not an API account's credential.
    resp = await pipeline.rater.post("/v1/rate/quote", json=SEED_002, headers=ADMIN)
    assert resp.status_code == 401

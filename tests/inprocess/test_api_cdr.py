"""`GET|POST /api/cdr?action=...` (seed 002) in process: every action's output against the
seed's shapes and field names, its parameters and their errors, the timezone shift at day
edges, and that one tenant never sees another's rows. Rows are inserted directly."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql

from cdr_notifier import compat
from cdr_notifier.compat_repository import cdr_statement
from cdrmodel.db import asyncpg_dsn
from tests.helpers import Tenant
from tests.inprocess.conftest import ADMIN, Pipeline
from tests.plans import index_partitions, plan_nodes, tiny_partitions

SEED_CDR_FIELDS = [
    "date",
    "callerid",
    "destination",
    "description",
    "account",
    "disposition",
    "duration",
    "seconds",
    "rate",
    "total",
    "uniqueid",
]
RESELLER = "561115"
DAY = {"date_from": "2026-03-01", "date_to": "2026-03-01", "timezone": "0"}


async def add_extension(
    pipeline: Pipeline, tenant: Tenant, number: str, account: str, client: str | None
) -> None:
    resp = await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/extensions/{number}",
        json={"package": tenant.package, "account": account, "client": client},
        headers=ADMIN,
    )
    assert resp.status_code == 200, resp.text


async def insert_cdr(pipeline: Pipeline, tenant: Tenant, start: str, **columns: Any) -> str:
    """One stored call at `start` (ISO 8601, UTC): an answered, priced outbound call from
    extension 100 unless `columns` say otherwise; answers its cdr_id."""
    row: dict[str, Any] = {
        "cdr_id": uuid.uuid4(),
        "database_id": tenant.database_id,
        "api_account": tenant.account,
        "originating_number": "100",
        "destination_number": "14185550100",
        "start_time": datetime.fromisoformat(start).replace(tzinfo=UTC),
        "duration": 11,
        "disposition": "ANSWERED",
        "received_at": datetime.now(UTC),
        # Older than the re-rating pass's second look (Pipeline.settled_tenant).
        "rated_at": datetime.now(UTC) - timedelta(days=1),
        "rated": True,
        "direction": "outbound",
        "extension": "100",
        "account": "100000_VoIP",
        "call_type": "I",
        "call_billing": "billed",
        "destination_name": "Canada - 418 Quebec City",
        "rate": Decimal("0.015"),
        "total": Decimal("0.015"),
        **columns,
    }
    if "extra" in row:
        row["extra"] = json.dumps(row["extra"])
    names = ", ".join(row)
    marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await pipeline.sql(f"INSERT INTO cdr ({names}) VALUES ({marks})", *row.values())
    return str(row["cdr_id"])


async def api(
    pipeline: Pipeline, tenant: Tenant, action: str, status: int = 200, **params: str
) -> dict[str, Any]:
    resp = await pipeline.notifier.get(
        "/api/cdr", params={"action": action, **params}, auth=(tenant.login, tenant.password)
    )
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == ("success" if status == 200 else "error"), body
    return body


async def uniqueids(pipeline: Pipeline, tenant: Tenant, action: str = "getCDR", **params: str):
    return [c["uniqueid"] for c in (await api(pipeline, tenant, action, **params))["cdr"]]


@pytest.fixture
async def tenant(pipeline: Pipeline) -> Tenant:
    """A fresh tenant whose re-rating pass is over: the unrated rows tests insert stay so."""
    return await pipeline.settled_tenant()


@pytest.fixture
async def other(pipeline: Pipeline) -> Tenant:
    """A second tenant with the same account name, reseller client and package id as the
    first, and one call of each kind on the days the tests read."""
    tenant = await pipeline.tenant()
    await add_extension(pipeline, tenant, "200", "200000_VoIP", RESELLER)
    await pipeline.settled(tenant)
    for start in ("2026-03-01T10:00:00", "2026-03-01T23:30:00", "2026-03-02T00:30:00"):
        for client in (None, RESELLER):
            await insert_cdr(pipeline, tenant, start, external_id="other", client=client)
    return tenant


async def test_get_cdr_answers_the_seed_fields_newest_first(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    inbound = await insert_cdr(
        pipeline,
        tenant,
        "2026-03-01T10:40:16",
        originating_number="5551112222",
        destination_number="100",
        direction="inbound",
        call_type="IB",
        destination_name=None,
        duration=11,
        rate=Decimal(0),
        total=Decimal(0),
        call_billing="free",
        extra={"clid": '"John Doe" <5551112222>'},
    )
    await insert_cdr(
        pipeline,
        tenant,
        "2026-03-01T10:36:32",
        duration=3725,
        external_id="128236206",
        extra={"caller_id_name": "Jane Doe"},
    )
    unrated = await insert_cdr(
        pipeline,
        tenant,
        "2026-03-01T09:00:00",
        rated=False,
        unrated_reason="no_rate",
        call_type="I",
        destination_name=None,
        rate=None,
        total=None,
        call_billing=None,
        account=None,
        disposition="NO ANSWER",
        duration=0,
    )
    body = await api(pipeline, tenant, "getCDR", **DAY)
    assert list(body) == ["status", "cdr"]
    assert [list(c) for c in body["cdr"]] == [SEED_CDR_FIELDS] * 3
    assert body["cdr"] == [
        {
            "date": "2026-03-01 10:40:16",
            "callerid": '"John Doe" <5551112222>',
            "destination": "100",
            "description": "Inbound - Inbound Calls",
            "account": "100000_VoIP",
            "disposition": "ANSWERED",
            "duration": "00:00:11",
            "seconds": 11,
            "rate": "0.00000000",
            "total": "0.00000000",
            "uniqueid": inbound,
        },
        {
            "date": "2026-03-01 10:36:32",
            "callerid": '"Jane Doe" <100>',
            "destination": "14185550100",
            "description": "Outbound - Canada - 418 Quebec City",
            "account": "100000_VoIP",
            "disposition": "ANSWERED",
            "duration": "01:02:05",
            "seconds": 3725,
            "rate": "0.01500000",
            "total": "0.01500000",
            "uniqueid": "128236206",
        },
        {
            "date": "2026-03-01 09:00:00",
            "callerid": "100",
            "destination": "14185550100",
            "description": "Outbound - International Calls",
            "account": "",
            "disposition": "NO ANSWER",
            "duration": "00:00:00",
            "seconds": 0,
            "rate": None,
            "total": None,
            "uniqueid": unrated,
        },
    ]


async def test_post_takes_parameters_and_credentials_from_a_form_body(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await insert_cdr(pipeline, tenant, "2026-03-01T12:00:00", external_id="form")
    fields = {"login": tenant.login, "password": tenant.password, "action": "getCDR", **DAY}
    as_urlencoded = await pipeline.notifier.post("/api/cdr", data=fields)
    assert as_urlencoded.status_code == 200, as_urlencoded.text
    assert [c["uniqueid"] for c in as_urlencoded.json()["cdr"]] == ["form"]
    # PHP's curl with an array of fields sends multipart/form-data.
    as_multipart = await pipeline.notifier.post(
        "/api/cdr", files={k: (None, v) for k, v in fields.items()}
    )
    assert as_multipart.status_code == 200, as_multipart.text
    assert as_multipart.json() == as_urlencoded.json()
    # The action in the query string, the rest (and Basic auth) in the body, also answer.
    mixed = await pipeline.notifier.post(
        "/api/cdr",
        params={"action": "getCDR"},
        data=DAY,
        auth=(tenant.login, tenant.password),
    )
    assert mixed.json() == as_urlencoded.json()
    by_query = await pipeline.notifier.get("/api/cdr", params=fields)
    assert by_query.json() == as_urlencoded.json()


async def test_timezone_shifts_the_dates_shown_and_the_range_at_day_edges(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    await insert_cdr(pipeline, tenant, "2026-03-01T23:30:00", external_id="late")
    await insert_cdr(pipeline, tenant, "2026-03-01T21:59:59", external_id="before")
    await insert_cdr(pipeline, tenant, "2026-03-01T22:00:00", external_id="midnight")
    await insert_cdr(pipeline, tenant, "2026-03-02T12:30:00", external_id="noon")

    def day(d: str, tz: str) -> dict[str, str]:
        return {"date_from": d, "date_to": d, "timezone": tz}

    # UTC: the 23:30 call is on the 1st.
    assert await uniqueids(pipeline, tenant, **day("2026-03-01", "0")) == [
        "late",
        "midnight",
        "before",
    ]
    # UTC+2: it is 01:30 on the 2nd, and 22:00 UTC is the 2nd's first second.
    plus2 = (await api(pipeline, tenant, "getCDR", **day("2026-03-02", "+2")))["cdr"]
    assert [(c["uniqueid"], c["date"]) for c in plus2] == [
        ("noon", "2026-03-02 14:30:00"),
        ("late", "2026-03-02 01:30:00"),
        ("midnight", "2026-03-02 00:00:00"),
    ]
    assert await uniqueids(pipeline, tenant, **day("2026-03-01", "2")) == ["before"]
    # An unescaped `+` in a URL reads as a space: still +2.
    raw = await pipeline.notifier.get(
        "/api/cdr?action=getCDR&date_from=2026-03-02&date_to=2026-03-02&timezone=+2",
        auth=(tenant.login, tenant.password),
    )
    assert [c["uniqueid"] for c in raw.json()["cdr"]] == ["noon", "late", "midnight"]
    # UTC-12: 12:30 UTC on the 2nd is 00:30 that day; everything else is on the 1st.
    minus12 = (await api(pipeline, tenant, "getCDR", **day("2026-03-02", "-12")))["cdr"]
    assert [(c["uniqueid"], c["date"]) for c in minus12] == [("noon", "2026-03-02 00:30:00")]
    # UTC+5:30, as hours with a fraction.
    india = (await api(pipeline, tenant, "getCDR", **day("2026-03-02", "5.5")))["cdr"]
    assert [(c["uniqueid"], c["date"]) for c in india] == [
        ("noon", "2026-03-02 18:00:00"),
        ("late", "2026-03-02 05:00:00"),
        ("midnight", "2026-03-02 03:30:00"),
        ("before", "2026-03-02 03:29:59"),
    ]
    # A range of days takes both ends whole, shifted: at UTC+13, 12:30 UTC on the 2nd is
    # already the 3rd.
    both = {"date_from": "2026-03-01", "date_to": "2026-03-02", "timezone": "13"}
    assert await uniqueids(pipeline, tenant, **both) == ["late", "midnight", "before"]


async def test_disposition_flags_select_the_calls_they_name(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    for minute, disposition in enumerate(["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"]):
        await insert_cdr(
            pipeline,
            tenant,
            f"2026-03-01T10:0{minute}:00",
            external_id=disposition,
            disposition=disposition,
        )

    async def ids(**flags: str) -> set[str]:
        return set(await uniqueids(pipeline, tenant, **DAY, **flags))

    everything = {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"}
    assert await ids() == everything
    assert await ids(answered="1", noanswer="1", busy="1", failed="1") == everything
    assert await ids(answered="1") == {"ANSWERED"}
    assert await ids(answered="0", noanswer="1", busy="on") == {"NO ANSWER", "BUSY"}
    assert await ids(failed="true") == {"FAILED", "CONGESTION"}
    assert await ids(answered="0", noanswer="0", busy="0", failed="0") == set()


async def test_calltype_callbilling_and_account_filter_the_calls(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await add_extension(pipeline, tenant, "200", "200000_VoIP", RESELLER)
    await pipeline.settled(tenant)
    await insert_cdr(pipeline, tenant, "2026-03-01T10:00:00", external_id="out")
    await insert_cdr(
        pipeline,
        tenant,
        "2026-03-01T11:00:00",
        external_id="in",
        originating_number="16135550100",
        destination_number="200",
        extension="200",
        account="200000_VoIP",
        client=RESELLER,
        direction="inbound",
        call_type="IB",
        call_billing="free",
        total=Decimal(0),
    )
    await insert_cdr(pipeline, tenant, "2026-03-01T12:00:00", external_id="mobile", call_type="M")

    async def ids(**params: str) -> list[str]:
        return await uniqueids(pipeline, tenant, **DAY, **params)

    assert await ids(calltype="all", callbilling="all", account="all") == ["mobile", "in", "out"]
    assert await ids(calltype="outgoing") == ["mobile", "out"]
    assert await ids(calltype="incoming") == ["in"]
    assert await ids(calltype="type:M") == ["mobile"]
    assert await ids(calltype="200") == ["in"]
    assert await ids(callbilling="free") == ["in"]
    assert await ids(callbilling="billed") == ["mobile", "out"]
    assert await ids(account="200000_VoIP") == ["in"]
    assert await ids(account="100000_VoIP", calltype="type:I") == ["out"]
    assert await ids(account="nobody") == []


async def test_reseller_cdr_is_one_client_of_the_tenant_without_rate(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    await insert_cdr(pipeline, tenant, "2026-03-01T10:00:00", external_id="mine")
    await insert_cdr(pipeline, tenant, "2026-03-01T11:00:00", external_id="resold", client=RESELLER)
    await insert_cdr(
        pipeline,
        tenant,
        "2026-03-01T12:00:00",
        external_id="resold-busy",
        client=RESELLER,
        account="200000_VoIP",
        disposition="BUSY",
        total=Decimal(0),
    )
    body = await api(pipeline, tenant, "getResellerCDR", client=RESELLER, **DAY)
    assert [c["uniqueid"] for c in body["cdr"]] == ["resold-busy", "resold"]
    fields = [f for f in SEED_CDR_FIELDS if f != "rate"]
    assert [list(c) for c in body["cdr"]] == [fields, fields]
    assert body["cdr"][1]["total"] == "0.01500000"
    assert await uniqueids(
        pipeline, tenant, "getResellerCDR", client=RESELLER, busy="1", **DAY
    ) == ["resold-busy"]
    assert await uniqueids(
        pipeline, tenant, "getResellerCDR", client=RESELLER, account="100000_VoIP", **DAY
    ) == ["resold"]
    assert await uniqueids(pipeline, tenant, "getResellerCDR", client="999", **DAY) == []


async def test_call_accounts_billing_and_types_list_the_seed_values(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    await add_extension(pipeline, tenant, "200", "200000_VoIP", RESELLER)
    await add_extension(pipeline, tenant, "201", "200000_VoIP", RESELLER)
    await add_extension(pipeline, tenant, "5551234567", "300000_VoIP", None)
    accounts = await api(pipeline, tenant, "getCallAccounts")
    assert accounts == {
        "status": "success",
        "accounts": [
            {"value": "all", "description": "All Accounts"},
            {"value": "100000_VoIP", "description": "100000_VoIP"},
            {"value": "200000_VoIP", "description": "200000_VoIP"},
            {"value": "300000_VoIP", "description": "300000_VoIP"},
        ],
    }
    resold = await api(pipeline, tenant, "getCallAccounts", client=RESELLER)
    assert [a["value"] for a in resold["accounts"]] == ["all", "200000_VoIP"]

    billing = await api(pipeline, tenant, "getCallBilling")
    assert billing == {
        "status": "success",
        "call_billing": [
            {"value": "all", "description": "All Calls"},
            {"value": "free", "description": "Free Calls"},
            {"value": "billed", "description": "Billed Calls"},
        ],
    }

    types = (await api(pipeline, tenant, "getCallTypes"))["call_types"]
    assert types[:3] == [
        {"value": "all", "description": "All Calls"},
        {"value": "outgoing", "description": "Outgoing Calls"},
        {"value": "incoming", "description": "Incoming Calls"},
    ]
    assert {"value": "type:I", "description": "International Calls"} in types
    assert types[-4:] == [
        {"value": "100", "description": "Calls to 100"},
        {"value": "200", "description": "Calls to 200"},
        {"value": "201", "description": "Calls to 201"},
        {"value": "5551234567", "description": "Calls to 5551234567"},
    ]
    resold_types = (await api(pipeline, tenant, "getCallTypes", client=RESELLER))["call_types"]
    assert [t["value"] for t in resold_types[3 + len(compat.CALL_TYPE_NAMES) :]] == ["200", "201"]
    # Every value listed is one getCDR takes.
    for option in types:
        await api(pipeline, tenant, "getCDR", calltype=option["value"], **DAY)


async def test_rates_show_the_package_line_and_the_route_line_under_it(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    # The other tenant's package has the same id and a line of its own.
    resp = await pipeline.rater.put(
        f"/v1/admin/tenants/{other.database_id}/packages/{other.package}/rates",
        content="prefix,destination,rate\n1204,Canada - 204 Manitoba,0.9\n",
        headers={**ADMIN, "content-type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text
    body = await api(pipeline, tenant, "getRates", package=tenant.package, query="canada")
    assert body == {
        "status": "success",
        "rates": [
            {
                "destination": "USA and Canada",
                "prefix": "1",
                "client_increment": 60,
                "client_rate": "0.02000000",
                "real_increment": None,
                "real_rate": None,
            },
            {
                "destination": "Canada - 418 Quebec City",
                "prefix": "1418",
                "client_increment": 60,
                "client_rate": "0.01500000",
                "real_increment": 6,
                "real_rate": "0.00520000",
            },
            {
                "destination": "Canada - 613 Ottawa",
                "prefix": "1613",
                "client_increment": 60,
                "client_rate": "0.01500000",
                "real_increment": 6,
                "real_rate": "0.00520000",
            },
        ],
    }
    by_prefix = await api(pipeline, tenant, "getRates", package=tenant.package, query="+141")
    assert [r["prefix"] for r in by_prefix["rates"]] == ["1418"]
    assert (await api(pipeline, tenant, "getRates", package=tenant.package, query="%"))[
        "rates"
    ] == []

    termination = await api(
        pipeline, tenant, "getTerminationRates", route=tenant.route, query="Quebec"
    )
    assert termination == {
        "status": "success",
        "route": {"value": tenant.route, "description": "route"},
        "rates": [
            {
                "destination": "Quebec termination",
                "prefix": "1418",
                "increment": 6,
                "rate": "0.00520000",
            }
        ],
    }


async def test_limit_caps_the_rows_and_a_header_says_so(pipeline: Pipeline, tenant: Tenant) -> None:
    for second in range(3):
        await insert_cdr(pipeline, tenant, f"2026-03-01T10:00:0{second}", external_id=str(second))
    params = {"action": "getCDR", **DAY, "limit": "2"}
    auth = (tenant.login, tenant.password)
    cut = await pipeline.notifier.get("/api/cdr", params=params, auth=auth)
    assert [c["uniqueid"] for c in cut.json()["cdr"]] == ["2", "1"]
    assert cut.headers["x-result-truncated"] == "true"
    # Exactly as many as the limit is not cut.
    whole = await pipeline.notifier.get("/api/cdr", params={**params, "limit": "3"}, auth=auth)
    assert len(whole.json()["cdr"]) == 3 and "x-result-truncated" not in whole.headers


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "action: missing"),
        ({"action": "getEverything"}, 400, "action: unknown action 'getEverything'"),
        ({"action": "getCDR", "date_to": "2026-03-01", "timezone": "0"}, 400, "date_from: missing"),
        ({"action": "getCDR", "date_from": "2026-03-01", "timezone": "0"}, 400, "date_to: missing"),
        ({**DAY, "action": "getCDR", "date_from": "01/03/2026"}, 400, "date_from: '01/03/2026'"),
        ({**DAY, "action": "getCDR", "date_to": "2026-02-30"}, 400, "date_to: '2026-02-30'"),
        ({**DAY, "action": "getCDR", "date_from": "1900-01-01"}, 400, "date_from: 1900-01-01"),
        ({**DAY, "action": "getCDR", "date_to": "2026-02-28"}, 400, "date_to: before date_from"),
        ({**DAY, "action": "getCDR", "date_to": "2027-03-02"}, 400, "at most 366 days"),
        ({**DAY, "action": "getCDR", "timezone": ""}, 400, "timezone: missing"),
        ({**DAY, "action": "getCDR", "timezone": "14"}, 400, "timezone: '14'"),
        ({**DAY, "action": "getCDR", "timezone": "-13"}, 400, "timezone: '-13'"),
        ({**DAY, "action": "getCDR", "timezone": "UTC"}, 400, "timezone: 'UTC'"),
        ({**DAY, "action": "getCDR", "timezone": "NaN"}, 400, "timezone: 'NaN'"),
        ({**DAY, "action": "getCDR", "timezone": "1.001"}, 400, "whole number of minutes"),
        ({**DAY, "action": "getCDR", "answered": "maybe"}, 400, "answered: 'maybe' is not 1 or 0"),
        ({**DAY, "action": "getCDR", "noanswer": "2"}, 400, "noanswer:"),
        ({**DAY, "action": "getCDR", "busy": ""}, 400, "busy:"),
        ({**DAY, "action": "getCDR", "failed": "yes please"}, 400, "failed:"),
        ({**DAY, "action": "getCDR", "calltype": "sideways"}, 400, "calltype: unknown value"),
        ({**DAY, "action": "getCDR", "calltype": "type:ZZ"}, 400, "calltype: unknown value"),
        ({**DAY, "action": "getCDR", "callbilling": "cheap"}, 400, "callbilling: unknown value"),
        ({**DAY, "action": "getCDR", "account": "x" * 201}, 400, "account: longer than 200"),
        ({**DAY, "action": "getCDR", "account": "a\x00b"}, 400, "account: must not contain"),
        ({**DAY, "action": "getCDR", "limit": "0"}, 400, "limit: a whole number from 1"),
        ({**DAY, "action": "getCDR", "limit": "10001"}, 400, "limit:"),
        ({**DAY, "action": "getResellerCDR"}, 400, "client: missing"),
        ({**DAY, "action": "getResellerCDR", "client": "1", "date_from": ""}, 400, "date_from:"),
        ({"action": "getCallAccounts", "client": "\x07"}, 400, "client: must not contain"),
        ({"action": "getCallTypes", "client": "c" * 300}, 400, "client: longer than"),
        ({"action": "getRates", "query": "Canada"}, 400, "package: missing"),
        ({"action": "getRates", "package": "pkg"}, 400, "query: missing"),
        ({"action": "getRates", "package": "nope", "query": "Canada"}, 404, "package: no package"),
        ({"action": "getRates", "package": "pkg", "query": "1", "limit": "x"}, 400, "limit:"),
        ({"action": "getTerminationRates", "query": "Canada"}, 400, "route: missing"),
        ({"action": "getTerminationRates", "route": "rt", "query": " "}, 400, "query: missing"),
        ({"action": "getTerminationRates", "route": "9", "query": "C"}, 404, "route: no route"),
    ],
)
async def test_a_bad_or_missing_parameter_is_an_error_naming_it(
    pipeline: Pipeline, tenant: Tenant, params: dict[str, str], status: int, message: str
) -> None:
    for method in ("GET", "POST"):
        resp = await pipeline.notifier.request(
            method,
            "/api/cdr",
            params=params if method == "GET" else None,
            data=params if method == "POST" else None,
            auth=(tenant.login, tenant.password),
        )
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert list(body) == ["status", "message"]
        assert body["status"] == "error"
        assert message in body["message"], body


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({}, "login: DatabaseID missing"),
        ({"login": "NODB/ACC", "password": "x"}, "login: DatabaseID unknown"),
        (
            {"login": "{db}/NOBODY", "password": "x"},
            "login: APIAccountID missing or unknown in that database",
        ),
        ({"login": "{db}/{account}"}, "password: APIPassword missing"),
        ({"login": "{db}/{account}", "password": "wrong"}, "password: APIPassword wrong"),
    ],
)
async def test_bad_credentials_are_401_before_anything_else(
    pipeline: Pipeline, tenant: Tenant, credentials: dict[str, str], message: str
) -> None:
    filled = {
        k: v.format(db=tenant.database_id, account=tenant.account) for k, v in credentials.items()
    }
    for action in ("getCallBilling", "getEverything"):
        resp = await pipeline.notifier.get("/api/cdr", params={"action": action, **filled})
        assert resp.status_code == 401, resp.text
        assert resp.json() == {"status": "error", "message": message}
    garbled = await pipeline.notifier.post(
        "/api/cdr", data={"action": "getCallBilling"}, headers={"authorization": "Basic %%%"}
    )
    assert garbled.status_code == 401
    assert garbled.json()["message"] == "login: DatabaseID missing"


async def test_an_unreadable_body_is_an_error_not_a_crash(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    auth = (tenant.login, tenant.password)
    broken = await pipeline.notifier.post(
        "/api/cdr",
        content=b"--x\r\nnot a part",
        headers={"content-type": "multipart/form-data; boundary=x"},
        auth=auth,
    )
    assert broken.status_code == 400 and broken.json()["status"] == "error"
    big = await pipeline.notifier.post(
        "/api/cdr", data={"action": "getCallBilling", "pad": "x" * 70000}, auth=auth
    )
    assert big.status_code == 413
    assert big.json() == {"status": "error", "message": "body: larger than 65536 bytes"}
    # A JSON body is not read; the query string still is.
    as_json = await pipeline.notifier.post(
        "/api/cdr", params={"action": "getCallBilling"}, json={"action": "getCDR"}, auth=auth
    )
    assert as_json.status_code == 200 and "call_billing" in as_json.json()


async def test_another_tenants_rows_never_appear(
    pipeline: Pipeline, tenant: Tenant, other: Tenant
) -> None:
    wide = {"date_from": "2026-02-28", "date_to": "2026-03-03", "timezone": "0"}
    assert await uniqueids(pipeline, tenant, **wide) == []
    assert await uniqueids(pipeline, tenant, account="100000_VoIP", **wide) == []
    assert await uniqueids(pipeline, tenant, "getResellerCDR", client=RESELLER, **wide) == []
    assert (await api(pipeline, tenant, "getCallAccounts", client=RESELLER))["accounts"] == [
        {"value": "all", "description": "All Accounts"}
    ]
    # The other tenant sees its own six.
    assert len(await uniqueids(pipeline, other, **wide)) == 6
    assert (
        await uniqueids(pipeline, other, "getResellerCDR", client=RESELLER, **wide) == ["other"] * 3
    )


async def test_one_account_day_is_one_backward_range_scan_of_its_index(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # 20,000 calls over 28 days, 40 accounts and 8 reseller clients: a day of one account
    # is ~18 rows, so only an index on (database_id, account, start_time) reads just those.
    # Posted now (UUIDv7 ids of now), they are in this month's partition of cdr.
    await pipeline.sql(
        """
        INSERT INTO cdr (cdr_id, database_id, api_account, originating_number,
                         destination_number, start_time, duration, disposition, received_at,
                         rated, account, client)
        SELECT uuidv7(), $1, 'ACC', '100', '14185550100',
               timestamptz '2026-01-01 00:00:00+00' + g * interval '2 minutes', 60,
               'ANSWERED', now(), true, 'acct' || (g % 40), 'client' || (g % 8)
        FROM generate_series(1, 20000) g
        """,
        tenant.database_id,
    )
    await pipeline.sql("ANALYZE cdr")
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        tiny = await tiny_partitions(conn)
        indexes = await index_partitions(conn)
        (month,) = await conn.fetch(
            "SELECT DISTINCT tableoid::regclass::text FROM cdr WHERE database_id = $1",
            tenant.database_id,
        )
    finally:
        await conn.close()
    day = {"date_from": "2026-01-10", "date_to": "2026-01-10", "timezone": "2"}
    day |= {"answered": "1", "noanswer": "1"}  # a filter the index does not hold, too
    cases = [
        (compat.cdr_query({**day, "account": "acct7"}, reseller=False), "account_start_time"),
        (compat.cdr_query({**day, "client": "client3"}, reseller=True), "client_start_time"),
        (compat.cdr_query(day, reseller=False), "start_time_cdr_id"),
    ]
    for query, index in cases:
        stmt = cdr_statement(database_id=tenant.database_id, query=query)
        sql = stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        ((explained,),) = await pipeline.sql(f"EXPLAIN (FORMAT JSON) {sql}")
        nodes = list(plan_nodes(json.loads(explained)[0]["Plan"]))
        # Never a sequential scan (but of a tiny partition: tests/plans.py); in
        # the partition that holds the tenant's rows, one range scan of one index (a plain
        # backward scan, or for a range the planner expects to read whole, a bitmap one).
        seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] not in tiny]
        assert not seq, nodes
        scans = [n for n in nodes if "Index Name" in n]
        (scan,) = [n for n in scans if indexes[n["Index Name"]][1] == month[0]]
        assert indexes[scan["Index Name"]][0] == f"ix_cdr_database_id_{index}", scan
        assert "start_time >=" in scan["Index Cond"], scan
        assert "start_time <" in scan["Index Cond"], scan
        if index != "start_time_cdr_id":  # the day of one account or client: few rows
            assert scan["Node Type"] == "Index Scan", scan
            assert scan["Scan Direction"] == "Backward", scan
            assert index.split("_")[0] in scan["Index Cond"], scan
            # Partitions' rows come merged in index order (Merge Append) or, beside the Seq
            # Scans of tiny partitions, sorted: never more than the range scans read.
            sorts = [n for n in nodes if n["Node Type"] == "Sort"]
            assert all(n["Plan Rows"] <= 2 * scan["Plan Rows"] + 10 for n in sorts), nodes
    answer = await api(pipeline, tenant, "getCDR", account="acct7", **day)
    assert 10 <= len(answer["cdr"]) <= 30
    assert all(c["date"].startswith("2026-01-10") for c in answer["cdr"])


async def test_other_methods_answer_405(pipeline: Pipeline, tenant: Tenant) -> None:
    resp = await pipeline.notifier.put("/api/cdr", params={"action": "getCallBilling"})
    assert resp.status_code == 405


def test_call_type_options_cover_the_codes_the_rater_assigns() -> None:
    from cdrmodel import phone

    codes = {
        phone.INTERNATIONAL,
        phone.MOBILE,
        phone.LOCAL,
        phone.NATIONAL,
        phone.TOLL_FREE,
        phone.PREMIUM,
        phone.OPERATOR,
        phone.INBOUND,
        phone.TOLL_FREE_INBOUND,
        phone.TOLL_FREE_INBOUND_MOBILE,
        phone.ON_NET,
    }
    assert set(compat.CALL_TYPE_NAMES) == codes

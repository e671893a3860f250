"""Property: a quote answers what live rating stores for the same call. Each example submits its
calls through ingest (Tansu, the rater's consumer, PostgreSQL) and quotes them on the rater; the
price, cost, call type, billed seconds and the whole explanation must be equal.

The tenant is in New York, so start times without an offset cross DST changes, and its plan
has every path of rule 1 (extension, default package, inbound line, on-net) and a deck line
that changes at an effective date inside the drawn period."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrmodel.money import fmt8
from tests.helpers import ADMIN_TOKEN, Tenant, unique_id, wait_for
from tests.inprocess.conftest import Pipeline

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
DECK = """prefix,destination,rate,increment,initial_increment,connect_fee,effective_from,direction
1,USA and Canada,0.0200,60,60,0,,outbound
1613,Ottawa,0.0150,60,60,0,,outbound
1613,Ottawa from June,0.0230,6,30,0.0100,2026-06-01T00:00:00-04:00,outbound
1418,Quebec City,0.015,60,60,0,,outbound
44,United Kingdom,0.0417,1,1,0.0003,,outbound
1418,Quebec City callers,0.0031,6,6,0,,inbound
"""
ROUTE = """prefix,destination,rate,increment
1418,Quebec termination,0.0052,6
1613,Ottawa termination,0.0052,6
44,UK termination,0.00911,1
"""
CALLERS = ["100", "101", "555", "14185550100", "+442071234567"]
TARGETS = [
    "14185550100",
    "16138220000",
    "+16138220000",
    "01116138220000",
    "12125550100",
    "011442071234567",
    "+447400123456",
    "8220000",
    "911",
    "18005550100",
    "100",
    "101",
    "33",
]
# Compared field by field with the stored record (quote answers these under the same names).
FIELDS = (
    "rated",
    "unrated_reason",
    "call_type",
    "call_billing",
    "destination_name",
    "matched_prefix",
    "billed_seconds",
    "rate",
    "total",
    "cost",
)
MONEY = {"rate", "total", "cost"}

calls = st.lists(
    st.fixed_dictionaries(
        {
            "origin": st.sampled_from(CALLERS),
            "target": st.sampled_from(TARGETS),
            "duration": st.integers(0, 7200) | st.sampled_from([1, 5, 6, 7, 29, 30, 31, 60, 61]),
            "start": st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31)).map(
                lambda d: d.replace(microsecond=0)
            ),
        }
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
async def planned(pipeline: Pipeline) -> Tenant:
    tenant = await pipeline.tenant(timezone="America/New_York")
    base = f"/v1/admin/tenants/{tenant.database_id}"
    account = {"password": tenant.password, "daily_limit": None, "default_package": tenant.package}
    for path, body in (
        (f"/api-accounts/{tenant.account}", account),
        ("/extensions/101", {"package": tenant.package, "account": "101_VoIP"}),
    ):
        (await pipeline.rater.put(base + path, json=body, headers=ADMIN)).raise_for_status()
    for path, csv in (
        (f"/packages/{tenant.package}/rates", DECK),
        (f"/routes/{tenant.route}/rates", ROUTE),
    ):
        resp = await pipeline.rater.put(
            base + path, content=csv, headers={**ADMIN, "content-type": "text/csv"}
        )
        resp.raise_for_status()
    return tenant


async def _quote(pipeline: Pipeline, tenant: Tenant, call: dict[str, Any]) -> dict[str, Any]:
    resp = await pipeline.rater.post(
        "/v1/rate/quote",
        json={
            "originating_number": call["origin"],
            "destination_number": call["target"],
            "start_time": call["start"].isoformat(),
            "duration": call["duration"],
        },
        auth=(tenant.login, tenant.password),
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=calls)
async def test_quote_equals_live_rating(
    pipeline: Pipeline, planned: Tenant, batch: list[dict[str, Any]]
) -> None:
    tenant = planned
    sent: dict[str, dict[str, Any]] = {}
    for call in batch:
        external_id = unique_id("Q")[:15]
        answer = await pipeline.submit(
            tenant,
            ExternalID=external_id,
            OriginatingNumber=call["origin"],
            DestinationNumber=call["target"],
            Duration=call["duration"],
            StartDateTime=call["start"].strftime("%Y-%m-%d %H:%M:%S"),
        )
        assert answer == "0"
        sent[external_id] = await _quote(pipeline, tenant, call)
    query = (
        "SELECT external_id, cdr_id, " + ", ".join(FIELDS) + " FROM cdr"
        " WHERE database_id = $1 AND external_id = ANY($2)"
    )

    async def all_stored() -> list[Any]:
        rows = await pipeline.sql(query, tenant.database_id, list(sent))
        return rows if len(rows) == len(sent) else []

    for row in await wait_for(all_stored, timeout=30, what=f"{len(sent)} stored records"):
        quoted = sent[row["external_id"]]
        stored = {f: fmt8(row[f]) if f in MONEY else row[f] for f in FIELDS}
        assert stored == {f: quoted[f] for f in FIELDS}, row["external_id"]
        explained = await pipeline.rater.get(
            f"/v1/cdrs/{row['cdr_id']}/explain", auth=(tenant.login, tenant.password)
        )
        assert explained.json()["explanation"] == quoted["explanation"], row["external_id"]

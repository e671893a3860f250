"""The PBX adapters in process against the real PostgreSQL and Tansu: FreeSWITCH mod_json_cdr
bodies (repeated callflow, arrays, both legs, percent-encoding) and Asterisk Master.csv files
(16 to 21 columns, ?tz=, reposted and forked lines, malformed lines, non-UTF-8 clid)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helpers import Tenant
from tests.inprocess.batch import codes, post
from tests.inprocess.conftest import Pipeline

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pbx"
FREESWITCH = "/v1/pbx/freeswitch"
ASTERISK = "/v1/pbx/asterisk"
CSV = {"content-type": "text/csv"}
A_LEG = "a7d0c1e2-0f3b-4a55-8c9d-1e2f3a4b5c6d"
B_LEG = "b8e1d2f3-1a4c-4b66-9dae-2f3a4b5c6d7e"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def by_id(stored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["cdr_id"]: r for r in stored}


async def test_freeswitch_repeated_callflow_bills_the_current_profile(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    headers = {"content-type": "application/json"}
    body = fixture("freeswitch_repeated_callflow.json")
    resp = await post(pipeline.ingest, tenant, FREESWITCH, content=body, headers=headers)
    assert codes(resp) == [0]
    (stored,) = await pipeline.wait_stored(tenant, 1)
    assert (stored["caller"], stored["target"]) == ("1000", "16135550100")
    assert stored["dialed_number"] == "916135550100"
    assert stored["account_code"] == "SALES EAST"  # percent-decoded
    assert (stored["duration"], stored["disposition"]) == (84, "ANSWERED")
    metrics = (await pipeline.ingest.get("/metrics")).text
    assert 'cdrflow_ingest_submissions_total{code="0",endpoint="pbx_freeswitch"}' in metrics


async def test_freeswitch_array_form_answers_each_cdr(pipeline: Pipeline, tenant: Tenant) -> None:
    body = [json.loads(fixture("freeswitch_busy.json")), "not a cdr"]
    resp = await post(pipeline.ingest, tenant, FREESWITCH, body)
    assert codes(resp) == [0, 50460]
    (stored,) = await pipeline.wait_stored(tenant, 1)
    assert (stored["disposition"], stored["duration"]) == ("BUSY", 0)


async def test_freeswitch_both_legs_bill_the_a_leg_once_and_link_the_b_leg(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    a_leg, b_leg = fixture("freeswitch_bridge_a_leg.json"), fixture("freeswitch_bridge_b_leg.json")
    b_first = await post(pipeline.ingest, tenant, FREESWITCH, content=b_leg)
    assert codes(b_first) == [50462]
    assert A_LEG in b_first.json()["results"][0]["message"]
    a = await post(pipeline.ingest, tenant, FREESWITCH, content=a_leg)
    assert codes(a) == [0]
    again = await post(pipeline.ingest, tenant, FREESWITCH, content=a_leg)
    assert codes(again) == [50421]
    assert again.json()["results"][0]["id"] == a.json()["results"][0]["id"]
    (stored,) = await pipeline.wait_stored(tenant, 1)
    assert stored["external_id"] == A_LEG and stored["b_leg_uuids"] == [B_LEG]
    # Percent-encoding: `%2B` is a plus, `%20` a space, and a literal `+` stays a plus.
    assert stored["caller"] == "+16135550177"
    assert stored["caller_id_name"] == "Roy, Jean+Luc"
    rows = await pipeline.sql(
        "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
    )
    assert rows[0]["n"] == 1


async def test_asterisk_files_of_every_width_are_taken(pipeline: Pipeline) -> None:
    tenant = await pipeline.tenant(timezone="America/Toronto")
    expected = {
        "asterisk_16.csv": [0, 0],
        "asterisk_17_uniqueid.csv": [0],
        "asterisk_17_userfield.csv": [0],
        # A malformed line (7 columns) gets its own code; the lines after it are taken.
        "asterisk_18.csv": [0, 0, 0, 50460, 0],
        "asterisk_21.csv": [0, 0],
    }
    ids: dict[str, list[str]] = {}
    for name, want in expected.items():
        resp = await post(pipeline.ingest, tenant, ASTERISK, content=fixture(name), headers=CSV)
        assert codes(resp) == want, (name, resp.text)
        ids[name] = [r["id"] for r in resp.json()["results"]]
        if 50460 in want:
            assert "line 4" in resp.json()["results"][3]["message"]
    stored = by_id(await pipeline.wait_stored(tenant, 10))
    first = stored[ids["asterisk_16.csv"][0]]
    # billsec is the billed duration; local time in the tenant's zone (EST in March).
    start = datetime.fromisoformat(first["start_time"])
    assert (first["duration"], start) == (84, datetime(2026, 3, 2, 14, 15, 4, tzinfo=UTC))
    forked = [stored[i] for i in ids["asterisk_18.csv"][:2]]
    assert {r["external_id"] for r in forked} == {"1772467200.16"}  # forked: both calls
    assert {r["disposition"] for r in forked} == {"ANSWERED", "NO ANSWER"}
    latin1 = stored[ids["asterisk_18.csv"][2]]
    assert "Hélène Côté" in latin1["clid"]
    assert stored[ids["asterisk_21.csv"][0]]["linkedid"] == "1772478000.30"


async def test_asterisk_tz_parameter_and_reposted_lines(pipeline: Pipeline) -> None:
    tenant = await pipeline.tenant(timezone="America/Toronto")
    line = fixture("asterisk_16.csv").splitlines()[0] + b"\n"
    resp = await post(
        pipeline.ingest, tenant, ASTERISK, content=line, headers=CSV, params={"tz": "UTC"}
    )
    assert codes(resp) == [0]
    # The same line again, even with CRLF, is the same call; in one body or in the next.
    again = await post(pipeline.ingest, tenant, ASTERISK, content=line * 2, headers=CSV)
    assert codes(again) == [50421, 50421]
    crlf = await post(
        pipeline.ingest, tenant, ASTERISK, content=line.rstrip() + b"\r\n", headers=CSV
    )
    assert codes(crlf) == [50421]
    bad = await post(
        pipeline.ingest, tenant, ASTERISK, content=line, headers=CSV, params={"tz": "Mars/Base"}
    )
    assert bad.status_code == 422 and "Mars/Base" in bad.json()["message"]
    (stored,) = await pipeline.wait_stored(tenant, 1)
    # Read in UTC, not Toronto (answered in the tenant's zone).
    assert datetime.fromisoformat(stored["start_time"]) == datetime(
        2026, 3, 2, 9, 15, 4, tzinfo=UTC
    )

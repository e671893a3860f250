"""The compat submission endpoint's codes (contract §2), the ops routes and JSON errors, with
the ingest app in process."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import Tenant
from tests.inprocess.conftest import Pipeline


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"DatabaseID": "NOSUCHDB"}, "50443"),
        ({"DatabaseID": None}, "50443"),
        ({"APIAccountID": "NOSUCH"}, "50440"),
        ({"APIAccountID": None}, "50440"),
        ({"APIPassword": None}, "50300"),
        ({"APIPassword": "wrong"}, "50390"),
        ({"OriginatingNumber": None}, "50411"),
        ({"OriginatingNumber": "1" * 21}, "50411"),
        ({"DestinationNumber": "2" * 21}, "50412"),
        ({"Duration": None}, "50416"),
        ({"Duration": "1.5"}, "50416"),
        ({"Duration": "-1"}, "50416"),
        ({"Duration": "86401"}, "50416"),
        ({"Duration": "abc"}, "50416"),
        ({"AccountCode": "a" * 21}, "50413"),
        ({"ExternalID": "e" * 16}, "50414"),
        # First failing check wins: a wrong password hides a bad duration.
        ({"APIPassword": "wrong", "Duration": "x"}, "50390"),
        ({"Duration": "86400"}, "0"),
        ({"Duration": "0"}, "0"),
        ({"StartDateTime": "2008-01-01 12:12:59"}, "0"),
        ({"StartDateTime": "2026-03-01T10:00:00+02:00"}, "0"),
        ({"StartDateTime": "not a date"}, "0"),  # accepted, held unrated
    ],
)
async def test_submission_codes(
    pipeline: Pipeline, tenant: Tenant, change: dict, code: str
) -> None:
    params = tenant.submit_params()
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    resp = await pipeline.ingest.get("/api_submitcdr.aspx", params=params)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == code


async def test_post_form_and_case_insensitive_names(pipeline: Pipeline, tenant: Tenant) -> None:
    lower = {k.lower(): v for k, v in tenant.submit_params(ExternalID="lower1").items()}
    posted = await pipeline.ingest.post("/api_submitcdr.aspx", data=lower)
    assert posted.text == "0"
    shouted = {k.upper(): v for k, v in tenant.submit_params(ExternalID="upper1").items()}
    got = await pipeline.ingest.get("/api_submitcdr.aspx", params=shouted)
    assert got.text == "0"
    stored = await pipeline.wait_stored(tenant, 2)
    assert sorted(r["external_id"] for r in stored) == ["lower1", "upper1"]


async def test_post_with_a_json_body_reads_only_the_query_string(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    # Only a form body carries parameters; a JSON body is not read, so DatabaseID is missing.
    resp = await pipeline.ingest.post("/api_submitcdr.aspx", json=tenant.submit_params())
    assert resp.text == "50443"


async def test_an_accepted_record_is_stored_with_what_was_submitted(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    answer = await pipeline.submit(
        tenant, ExternalID="x1", AccountCode="acct7", StartDateTime="2026-03-01T10:00:00+02:00"
    )
    assert answer == "0"
    (record,) = await pipeline.wait_stored(tenant, 1)
    assert record["external_id"] == "x1" and record["account_code"] == "acct7"
    assert record["start_time"] == "2026-03-01T08:00:00+00:00"
    assert record["api_account"] == tenant.account and record["duration"] == 90


async def test_an_unreadable_start_time_is_held_unrated_with_its_reason(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, StartDateTime="not a date") == "0"
    (record,) = await pipeline.wait_stored(tenant, 1)
    assert record["rated"] is False
    assert record["unrated_reason"] == "invalid_start_time"
    assert record["start_time"] is None and record["start_time_raw"] == "not a date"
    assert record["total"] is None and record["price"] == 0


async def test_unknown_path_and_method_answer_json(pipeline: Pipeline) -> None:
    missing = await pipeline.ingest.get("/no/such/path")
    wrong = await pipeline.ingest.delete("/api_submitcdr.aspx")
    assert missing.status_code == 404
    assert missing.json() == {"message": "no such path: /no/such/path"}
    assert wrong.status_code == 405
    assert wrong.json() == {"message": "method DELETE not allowed on /api_submitcdr.aspx"}


async def test_head_submits_nothing_and_repeated_names_take_the_last(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    head = await pipeline.ingest.head("/api_submitcdr.aspx", params=tenant.submit_params())
    assert head.status_code == 405
    # The query string is read as Starlette reads it: the last of a repeated name wins.
    query = httpx.QueryParams(tenant.submit_params(ExternalID="rep1")).add("Duration", "bad")
    assert (await pipeline.ingest.get("/api_submitcdr.aspx", params=query)).text == "50416"
    query = httpx.QueryParams(tenant.submit_params(ExternalID="rep2", Duration="bad"))
    assert (await pipeline.ingest.get(f"/api_submitcdr.aspx?{query}&Duration=7")).text == "0"
    (record,) = await pipeline.wait_stored(tenant, 1)
    assert record["external_id"] == "rep2" and record["duration"] == 7


async def test_health_ready_metrics_and_docs(pipeline: Pipeline, tenant: Tenant) -> None:
    expected_checks = {
        "ingest": {"database", "kafka", "producer", "tasks"},
        "rater": {"database", "kafka", "producer", "consumer", "tasks"},
        "notifier": {"database", "kafka", "consumer", "tasks"},
    }
    for name, client in (
        ("ingest", pipeline.ingest),
        ("rater", pipeline.rater),
        ("notifier", pipeline.notifier),
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body.pop("status") == "ready"
        assert body == dict.fromkeys(expected_checks[name], "ok")
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        assert spec["info"]["title"] == f"cdrflow {name}"
        # operationIds must be unique or the document is invalid (GET and POST of the compat
        # route once shared one).
        ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
        assert len(ids) == len(set(ids)), ids
    assert await pipeline.submit(tenant, Duration="abc") == "50416"
    metrics = (await pipeline.ingest.get("/metrics")).text
    assert 'cdrflow_ingest_submissions_total{code="50416",endpoint="api_submitcdr"}' in metrics

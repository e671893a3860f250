"""The compat submission endpoint's codes (contract §2), against the real ingest process."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack
from tests.helpers import Tenant

pytestmark = pytest.mark.slow


async def submit(stack: Stack, params: dict[str, str], *, method: str = "GET") -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{stack.ingest.url}/api_submitcdr.aspx"
        if method == "GET":
            resp = await client.get(url, params=params)
        else:
            resp = await client.post(url, data=params)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


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
async def test_submission_codes(stack: Stack, tenant: Tenant, change: dict, code: str) -> None:
    params = tenant.submit_params()
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    assert await submit(stack, params) == code


async def test_post_form_and_case_insensitive_names(stack: Stack, tenant: Tenant) -> None:
    params = {k.lower(): v for k, v in tenant.submit_params().items()}
    assert await submit(stack, params, method="POST") == "0"
    shouted = {k.upper(): v for k, v in tenant.submit_params().items()}
    assert await submit(stack, shouted) == "0"


async def test_unknown_path_and_method_answer_json(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        missing = await client.get(f"{stack.ingest.url}/no/such/path")
        wrong = await client.delete(f"{stack.ingest.url}/api_submitcdr.aspx")
    assert missing.status_code == 404 and "message" in missing.json()
    assert wrong.status_code == 405 and "message" in wrong.json()


async def test_health_ready_metrics_and_docs(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for proc in (stack.ingest, stack.rater, stack.notifier):
            assert (await client.get(f"{proc.url}/healthz")).status_code == 200
            ready = await client.get(f"{proc.url}/readyz")
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body.pop("status") == "ready"
            assert body["database"] == body["kafka"] == "ok"
            assert set(body.values()) == {"ok"}
            assert (await client.get(f"{proc.url}/docs")).status_code == 200
            assert (await client.get(f"{proc.url}/openapi.json")).status_code == 200
        metrics = await client.get(f"{stack.ingest.url}/metrics")
    assert "cdrflow_ingest_submissions_total" in metrics.text

"""A full run through three real service processes, then their logs read line by line: each
line one JSON object, request lines carrying their request id (and tenant, once known),
push lines their tenant and cdr id, and no secret anywhere, plain or encoded.

The stack is this module's own (database, topic namespace, consumer groups, log files), so
the logs read are exactly this run's, and its settings can make a breaker open within
seconds. Its database URL carries a password, as a production one does.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from tests.conftest import Infra
from tests.helpers import ADMIN_TOKEN, Receiver, Tenant, create_tenant, running, wait_for

pytestmark = pytest.mark.slow

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
NAMESPACE = "loghygiene."
ROLE = "cdr_log_hygiene"


@dataclass
class Run:
    procs: dict[str, ServiceProcess]
    logs: dict[str, Path]
    secrets: dict[str, str] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)
    tenant: Tenant | None = None

    def lines(self) -> dict[str, list[str]]:
        return {name: path.read_text().splitlines() for name, path in self.logs.items()}


def encodings(secret: str) -> set[str]:
    """The forms a secret could plausibly take in a log line."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        secret.replace(" ", "+"),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    }
    return {f for f in forms if len(f) >= 6}


@pytest.fixture
def stack_env(infra: Infra) -> Iterator[dict[str, str]]:
    db_password = "dbpw-" + uuid.uuid4().hex[:12]
    with infra.own_database("log_hygiene") as url:
        # trust authentication: any password is accepted, but it is in the URL all the same
        asyncio.run(infra.admin_sql(f"DROP ROLE IF EXISTS {ROLE}"))
        asyncio.run(infra.admin_sql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{db_password}'"))
        infra.create_topics(NAMESPACE)
        yield infra.env(
            CDR_DATABASE_URL=url.replace("://postgres@", f"://{ROLE}:{db_password}@"),
            CDR_TOPIC_NAMESPACE=NAMESPACE,
            CDR_RATER_GROUP="loghygiene-rater",
            CDR_NOTIFIER_GROUP="loghygiene-notifier",
            CDR_WEBHOOK_KEYS=Fernet.generate_key().decode(),
            CDR_BREAKER_FAILURES="2",
            CDR_RETRY_BASE_SECONDS="0.1",
            CDR_RETRY_MULTIPLIER="1.5",
            CDR_PUSH_TIMEOUT="2",
            CDR_PUSH_CONNECT_TIMEOUT="1",
        )


@pytest.fixture
async def run(stack_env: dict[str, str], infra: Infra) -> AsyncIterator[Run]:
    base = infra.logs / "log_hygiene"
    logs = {name: base / f"{name}.log" for name in ("ingest", "rater", "notifier")}
    for path in logs.values():
        path.unlink(missing_ok=True)
    procs = {
        name: ServiceProcess(name, free_port(), stack_env, log_path=logs[name]) for name in logs
    }
    receiver = Receiver()
    await receiver.start()
    try:
        with running(procs.values()):
            result = Run(procs, logs)
            result.secrets["database password"] = (
                stack_env["CDR_DATABASE_URL"].split("@")[0].rsplit(":", 1)[1]
            )
            result.secrets["webhook keys"] = stack_env["CDR_WEBHOOK_KEYS"]
            await traffic(result, receiver)
            yield result
    finally:
        await receiver.stop()


async def traffic(run: Run, receiver: Receiver) -> None:
    ingest, rater, notifier = (run.procs[n].url for n in ("ingest", "rater", "notifier"))
    async with httpx.AsyncClient(timeout=30) as client:
        tenant = run.tenant = await create_tenant(rater)
        run.secrets |= {
            "API password": tenant.password,
            "admin token": ADMIN_TOKEN,
            "Basic credentials": f"{tenant.login}:{tenant.password}",
        }
        basic = (tenant.login, tenant.password)

        # A request that logs once authenticated: the quote loads the tenant's plan.
        rid = run.request_ids["quote"] = "quote-" + uuid.uuid4().hex[:8]
        quote_body = {
            "originating_number": "100",
            "destination_number": "16138220000",
            "start_time": "2026-01-05T10:00:00",
            "duration": 90,
        }
        resp = await client.post(
            f"{rater}/v1/rate/quote", json=quote_body, auth=basic, headers={"x-request-id": rid}
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-request-id"] == rid

        # Subscriptions: a CRM with a chosen secret; one whose URL carries credentials and
        # whose port is closed (its pushes fail, its breaker opens and is logged).
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        run.secrets["webhook secret"] = secret
        run.secrets["webhook key"] = secret.removeprefix("whsec_")
        subs = f"{notifier}/v1/admin/tenants/{tenant.database_id}/subscriptions"
        resp = await client.put(
            f"{subs}/crm", json={"url": receiver.url, "secret": secret}, headers=ADMIN
        )
        assert resp.status_code == 200, resp.text
        url_password = "urlpw-" + uuid.uuid4().hex[:10]
        run.secrets["URL password"] = url_password
        closed = f"http://crm-user:{url_password}@127.0.0.1:{free_port()}/hook"
        resp = await client.put(f"{subs}/closed", json={"url": closed}, headers=ADMIN)
        assert resp.status_code == 200, resp.text
        run.secrets["generated webhook secret"] = resp.json()["secret"]
        resp = await client.post(f"{subs}/crm/rotate-secret", json={}, headers=ADMIN)
        assert resp.status_code == 200, resp.text
        run.secrets["rotated webhook secret"] = resp.json()["secret"]

        # Submissions: the compat GET (password in the query string), a native batch with
        # Basic auth, an unrated one (no package for its origin), wrong passwords until the
        # account is throttled (a warning logged inside the request).
        params = tenant.submit_params(ExternalID=uuid.uuid4().hex[:15])
        resp = await client.get(f"{ingest}/api_submitcdr.aspx", params=params)
        assert resp.text == "0"
        assert len(resp.headers["x-request-id"]) == 16
        records = [
            {"originating_number": "100", "destination_number": "14185550100", "duration": 11},
            {"originating_number": "5550000", "destination_number": "16138220000", "duration": 5},
        ]
        resp = await client.post(f"{ingest}/v1/cdrs", json=records, auth=basic)
        assert resp.json()["accepted"] == 2, resp.text
        wrong = "wrongpw-" + uuid.uuid4().hex[:8]
        run.secrets["wrong password"] = wrong
        for n in range(8):
            bad = {**params, "APIPassword": wrong}
            rid = run.request_ids[f"wrong{n}"] = f"wrong-{n}-{uuid.uuid4().hex[:6]}"
            resp = await client.get(
                f"{ingest}/api_submitcdr.aspx", params=bad, headers={"x-request-id": rid}
            )
            assert resp.text == "50390"

        # Three CDRs pushed to the CRM; the closed endpoint's breaker opens.
        await wait_for(lambda: len(receiver.requests) >= 3, timeout=60, what="three pushes")
        await wait_for(
            lambda: "breaker open" in run.logs["notifier"].read_text(),
            timeout=60,
            what="the closed endpoint's breaker to open",
        )
        # Queries with credentials in Basic and in the query string (login=, password=).
        resp = await client.get(f"{notifier}/v1/cdrs", auth=basic)
        assert len(resp.json()["cdrs"]) == 3
        query = {"login": tenant.login, "password": tenant.password}
        resp = await client.get(f"{notifier}/v1/cdrs", params=query)
        assert len(resp.json()["cdrs"]) == 3


def every_line_is_one_json_object(run: Run) -> None:
    for service, lines in run.lines().items():
        assert lines, f"{service} logged nothing"
        for line in lines:
            entry = orjson.loads(line)  # a line that is not JSON fails here, named
            assert isinstance(entry, dict), line
            assert {"timestamp", "level", "logger", "event"} <= entry.keys(), line
            # No terminal colour codes (uvicorn passes its messages again with them).
            assert "\x1b" not in str(entry.values()) and "color_message" not in entry, line


def no_secret_reaches_a_log(run: Run) -> None:
    text = {service: "\n".join(lines) for service, lines in run.lines().items()}
    for what, secret in run.secrets.items():
        for form in encodings(secret):
            for service, logged in text.items():
                assert form not in logged, f"{service} logged the {what} (as {form!r})"


def _entries(run: Run, service: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in run.lines()[service]]


def request_lines_carry_their_request_id_and_tenant(run: Run) -> None:
    assert run.tenant is not None
    rater = _entries(run, "rater")
    # Authenticated (tenant bound), then the plan loaded for the quote, unless the rater's
    # re-rate poll loaded it first.
    for entry in rater:
        if entry.get("request_id") == run.request_ids["quote"]:
            assert entry["tenant"] == run.tenant.database_id
    # Admin requests name the tenant of their path.
    notifier = _entries(run, "notifier")
    (rotated,) = [e for e in notifier if "secret rotated" in e["event"]]
    assert rotated["tenant"] == run.tenant.database_id
    assert len(rotated["request_id"]) == 16
    throttled = [e for e in _entries(run, "ingest") if "auth throttled" in e["event"]]
    assert throttled
    wrong = {v for k, v in run.request_ids.items() if k.startswith("wrong")}
    assert all(e.get("request_id") in wrong for e in throttled)
    # Lines outside any request (startup, consumer loops) carry none.
    assert all("request_id" not in e for e in rater if "ready on" in e["event"])


def push_lines_carry_tenant_and_cdr_id(run: Run) -> None:
    assert run.tenant is not None
    opened = [e for e in _entries(run, "notifier") if "breaker open" in e["event"]]
    assert opened
    for entry in opened:
        assert entry["tenant"] == run.tenant.database_id
        assert uuid.UUID(entry["cdr_id"])
        assert "delivery_id" in entry


async def the_services_export_what_the_dashboard_graphs(run: Run) -> None:
    samples: list[tuple[str, dict[str, str], float]] = []  # of the three processes
    async with httpx.AsyncClient(timeout=30) as client:
        for proc in run.procs.values():
            resp = await client.get(f"{proc.url}/metrics")
            for family in text_string_to_metric_families(resp.text):
                samples += [(s.name, s.labels, s.value) for s in family.samples]

    def series(name: str, **labels: str) -> list[float]:
        return [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]

    def value(name: str, **labels: str) -> float:
        return sum(series(name, **labels))

    http = "cdrflow_http_request_duration_seconds_count"
    assert value(http, route="/api_submitcdr.aspx", method="GET", code="200") == 9
    assert value(http, route="/v1/admin/tenants/{database_id}", method="PUT", code="200") >= 1
    assert value("cdrflow_ingest_submissions_total", endpoint="api_submitcdr", code="50390") == 8
    assert value("cdrflow_kafka_produce_seconds_count", topic=NAMESPACE + "cdr.submitted.v1") >= 2
    assert value("cdrflow_kafka_produce_seconds_count", topic=NAMESPACE + "cdr.rated.v1") >= 1
    assert value("cdrflow_rater_cdrs_total", outcome="rated") == 2
    assert value("cdrflow_rater_cdrs_total", outcome="unrated", reason="no_package") == 1
    for group in ("loghygiene-rater", "loghygiene-notifier"):
        assert value("cdrflow_consumer_batch_records_sum", group=group) == 3
        assert value("cdrflow_consumer_batch_seconds_count", group=group) >= 1
        # One series per partition assigned (4), each drained.
        assert series("cdrflow_consumer_lag_records", group=group) == [0.0] * 4
    assert value("cdrflow_notifier_deliveries_total", status="delivered") == 3
    assert value("cdrflow_notifier_push_attempts_total", outcome="failed") >= 2
    assert value("cdrflow_notifier_breaker_open") == 1


async def test_a_full_run_logs_json_lines_with_their_ids_and_no_secret(run: Run) -> None:
    # One test over one run, not one per check: xdist could hand separate tests of this
    # module to both workers, and each would start a stack of its own.
    every_line_is_one_json_object(run)
    no_secret_reaches_a_log(run)
    request_lines_carry_their_request_id_and_tenant(run)
    push_lines_carry_tenant_and_cdr_id(run)
    await the_services_export_what_the_dashboard_graphs(run)

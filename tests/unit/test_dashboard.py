"""deploy/grafana/cdrflow.json queries only metrics the services export, and graphs all of them.

The names exported are read the way Prometheus reads them: each service's app is built in
process (no lifespan, no database or broker needed for /metrics) and its /metrics scraped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdr_ingest.app import create_app as ingest_app
from cdr_ingest.settings import IngestSettings
from cdr_notifier.app import create_app as notifier_app
from cdr_notifier.settings import NotifierSettings
from cdr_rater.app import create_app as rater_app
from cdr_rater.settings import RaterSettings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "cdrflow.json"
TOKEN = "dashboard-test-token"

# Metrics declared in code that the dashboard deliberately leaves out, each with its reason.
# (Empty today: every cdrflow metric has a panel.)
NOT_GRAPHED: dict[str, str] = {}

# The sample names a family of each type exposes (what PromQL can select).
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}
# A metric name in an expression: ours, and the client library's process_/python_ ones.
_NAME = re.compile(r"\b((?:cdrflow|process|python)_[a-zA-Z0-9_]*)\b")


def _exprs(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets' `expr`, variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str) and "(" in value:
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queried_names() -> set[str]:
    return {m for expr in _exprs(_dashboard()) for m in _NAME.findall(expr)}


@pytest.fixture(scope="module")
async def exported() -> dict[str, str]:
    """Family name -> type, from scraping each service's /metrics."""
    apps = [
        ingest_app(IngestSettings(admin_token=TOKEN)),  # type: ignore[call-arg]
        rater_app(RaterSettings(admin_token=TOKEN)),  # type: ignore[call-arg]
        notifier_app(NotifierSettings(admin_token=TOKEN)),  # type: ignore[call-arg]
    ]
    families: dict[str, str] = {}
    for app in apps:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            resp = await client.get("/metrics")
        assert resp.status_code == 200
        for family in text_string_to_metric_families(resp.text):
            families[family.name] = family.type
    return families


def _samples(families: dict[str, str]) -> set[str]:
    return {f + s for f, kind in families.items() for s in _SUFFIXES.get(kind, ("",))}


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    doc = _dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


def test_every_metric_the_dashboard_queries_is_exported(exported: dict[str, str]) -> None:
    missing = queried_names() - _samples(exported)
    assert not missing, f"the dashboard queries names no service exports: {sorted(missing)}"


def test_every_cdrflow_metric_is_graphed_or_allowlisted(exported: dict[str, str]) -> None:
    queried = queried_names()
    ungraphed = sorted(
        name
        for name, kind in exported.items()
        if name.startswith("cdrflow_")
        and name not in NOT_GRAPHED
        and not any(name + s in queried for s in _SUFFIXES.get(kind, ("",)))
    )
    assert not ungraphed, f"metrics without a panel (graph them or allowlist them): {ungraphed}"
    assert not set(NOT_GRAPHED) - set(exported), "allowlisted metrics that no longer exist"


def test_the_new_metrics_are_there(exported: dict[str, str]) -> None:
    # The list, by name and type: the names docs/operations.md documents.
    assert {
        "cdrflow_http_request_duration_seconds": "histogram",
        "cdrflow_ingest_submissions": "counter",
        "cdrflow_kafka_produce_seconds": "histogram",
        "cdrflow_consumer_lag_records": "gauge",
        "cdrflow_consumer_batch_records": "histogram",
        "cdrflow_consumer_batch_seconds": "histogram",
        "cdrflow_rater_cdrs": "counter",
        "cdrflow_notifier_deliveries": "counter",
        "cdrflow_notifier_push_seconds": "histogram",
        "cdrflow_notifier_breaker_open": "gauge",
    }.items() <= exported.items()

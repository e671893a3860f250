"""Hypothesis over the submission bodies and parameters, in process against the real ingest
app (its lifespan, the session's PostgreSQL and Tansu): arbitrary JSON values and records,
NDJSON and raw bytes to `/v1/cdrs`, arbitrary parameter dicts to `/api_submitcdr.aspx`.
Never a 500; every compat answer is a code of the contract's table; every batch answer has
one result per record.

Hypothesis drives a sync test; the apps live on an event loop in a thread of their own (the
engine and Kafka clients belong to the loop they were made on), reached with `run`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdr_ingest.app import create_app as create_ingest
from cdr_ingest.parsing.native import _SEED_KNOWN, CONTRACT_FIELDS
from cdr_ingest.settings import IngestSettings
from cdr_rater.app import create_app as create_rater
from cdr_rater.settings import RaterSettings
from tests.conftest import Infra
from tests.fuzz.depth import EXAMPLES
from tests.helpers import Tenant, create_tenant

T = TypeVar("T")

# The apps' background tasks (Kafka clients) use the global `random` on their loop's thread
# while hypothesis draws in the test's thread; no strategy here uses it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
NAMESPACE = "batchfuzz."
CONTRACT_CODES = {
    0,
    50443,
    50440,
    50300,
    50390,
    50411,
    50412,
    50416,
    50413,
    50414,
    50421,
    50429,
    50503,
}
# The names the parser reads, and seed-003 ones it keeps in `extra`.
FIELDS = [*sorted(CONTRACT_FIELDS | _SEED_KNOWN), "status", "type", "did"]
COMPAT_NAMES = [
    "DatabaseID",
    "APIAccountID",
    "APIPassword",
    "OriginatingNumber",
    "DestinationNumber",
    "Duration",
    "StartDateTime",
    "AccountCode",
    "ExternalID",
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class Served:
    loop: asyncio.AbstractEventLoop
    ingest: httpx.AsyncClient
    batch_tenant: Tenant
    compat_tenant: Tenant

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)


@pytest.fixture(scope="module")
def served(infra: Infra) -> Iterator[Served]:
    infra.create_topics(NAMESPACE)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="batch-fuzz-loop", daemon=True)
    thread.start()
    stack = AsyncExitStack()
    common = infra.app_settings(NAMESPACE)

    async def start() -> Served:
        clients = []
        for app in (
            create_ingest(IngestSettings(**common)),
            create_rater(RaterSettings(**common, rater_group="batchfuzz-rater")),
        ):
            manager = await stack.enter_async_context(
                LifespanManager(app, startup_timeout=60, shutdown_timeout=60)
            )
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=manager.app),
                        base_url="http://fuzz",
                        timeout=60,
                    )
                )
            )
        ingest, rater = clients
        return Served(loop, ingest, await create_tenant(rater), await create_tenant(rater))

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["90", "-3", "12.5", "2026-03-02 09:00:00", "2008-Jan-01 12:12:59", "ANSWER"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=8)
bodies = records | st.lists(records | values, max_size=8) | values


def _check_batch(resp: httpx.Response, expected: int | None) -> None:
    assert resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    answer = resp.json()
    if resp.status_code != 200:
        assert resp.status_code in {400, 413, 422}, resp.text
        assert answer["message"]
        return
    results = answer["results"]
    if expected is not None:
        assert len(results) == expected, (expected, answer)
    assert [r["index"] for r in results] == list(range(len(results)))
    assert answer["accepted"] == sum(r["code"] == 0 for r in results)


def _post(served: Served, content: bytes, content_type: str) -> httpx.Response:
    tenant = served.batch_tenant
    return served.run(
        served.ingest.post(
            "/v1/cdrs",
            content=content,
            headers={"content-type": content_type},
            auth=(tenant.login, tenant.password),
        )
    )


@FUZZ
@given(body=bodies)
def test_any_json_body_answers_one_result_per_record(served: Served, body: Any) -> None:
    resp = _post(served, json.dumps(body).encode(), "application/json")
    _check_batch(resp, len(body) if isinstance(body, list) else 1)


@FUZZ
@given(lines=st.lists(records | values, max_size=8), raw=st.binary(max_size=200))
def test_any_ndjson_or_bytes_answers_one_result_per_line(
    served: Served, lines: list[Any], raw: bytes
) -> None:
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    _check_batch(_post(served, body, "application/x-ndjson"), len(lines))
    _check_batch(_post(served, raw, "application/x-ndjson"), None)
    _check_batch(_post(served, raw, "application/json"), None)


compat_params = st.dictionaries(
    st.sampled_from(COMPAT_NAMES).map(str.lower) | st.sampled_from(COMPAT_NAMES) | st.text(),
    st.text(max_size=40) | st.sampled_from(["90", "-1", "86401", "2026-03-02 09:00:00"]),
    max_size=10,
)


@FUZZ
@given(params=compat_params, own=st.booleans(), method=st.sampled_from(["GET", "POST"]))
def test_any_compat_parameters_answer_a_code_of_the_table(
    served: Served, params: dict[str, str], own: bool, method: str
) -> None:
    tenant = served.compat_tenant
    if own:  # half the cases get past authentication
        params = {**tenant.submit_params(), **params, "DatabaseID": tenant.database_id}
    if method == "GET":
        call = served.ingest.get("/api_submitcdr.aspx", params=params)
    else:
        call = served.ingest.post("/api_submitcdr.aspx", data=params)
    resp = served.run(call)
    assert resp.status_code == 200, resp.text
    assert int(resp.text) in CONTRACT_CODES, resp.text

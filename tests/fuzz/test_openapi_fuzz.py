"""Schemathesis against each service's own OpenAPI document, in process: no 500, no answer the
document does not describe.

Each app is the real one (`create_app(settings)`) on the session's embedded PostgreSQL and Tansu,
under a topic namespace of its own so fuzzed submissions never reach the stack's consumers.
Truly in process: schemathesis 4's ASGI transport calls the app on one event loop in a portal
thread and sends it lifespan events itself. `KeptAlive` runs the real lifespan once, on that
loop (so the engine and Kafka clients live where requests use them), keeps it across test items
and ends it at module teardown, before the session stops PostgreSQL and Tansu.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import schemathesis
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from cdr_ingest.app import create_app as create_ingest
from cdr_ingest.settings import IngestSettings
from cdr_notifier.app import create_app as create_notifier
from cdr_notifier.settings import NotifierSettings
from cdr_rater.app import create_app as create_rater
from cdr_rater.settings import RaterSettings
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.fuzz.depth import EXAMPLES
from tests.helpers import ADMIN_TOKEN

T = TypeVar("T")

# The apps' background tasks (Kafka clients, the notifier's jittered retries) use the global
# `random` on schemathesis' loop thread while hypothesis draws a case in the test thread, which
# hypothesis reads as "random used inside a strategy". Nothing in a strategy here uses it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

NAMESPACE = "fuzz."
SEED = 20261123
# Per operation and phase (tests/fuzz/depth.py). At 120 the module took ~55 s on two shared
# cores when the services had half today's operations; against the rater of before the edge
# validation it found the daily_limit and NUL-in-body 500s (tests/fuzz/test_edge_validation.py
# pins all three findings, whatever the depth).
MAX_EXAMPLES = EXAMPLES
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]
ACCOUNT = ("FUZZDB", "FUZZ", "fuzz-" + uuid.uuid4().hex[:8])


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )


def _auth_headers(path: str) -> dict[str, str]:
    """The admin token on admin routes, the fuzz account's Basic credentials elsewhere."""
    if path.startswith("/v1/admin/"):
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    database_id, account, password = ACCOUNT
    basic = base64.b64encode(f"{database_id}/{account}:{password}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}


def _schema(create: Any, settings_cls: Any) -> Any:
    """The document the app serves at /openapi.json; building it connects to nothing."""
    app = create(settings_cls(admin_token=ADMIN_TOKEN))
    return schemathesis.openapi.from_dict(app.openapi(), config=_config())


ingest = _schema(create_ingest, IngestSettings)
rater = _schema(create_rater, RaterSettings)
notifier = _schema(create_notifier, NotifierSettings)


# Every subscription the fuzzer writes points at the discard port on loopback, where nothing
# listens: the fuzz tenant's deliveries (and any other notifier sharing this database) must never
# send traffic to a generated host name. URL validation has its own tests (test_urls).
SAFE_PUSH_URL = "http://127.0.0.1:9/fuzz"


@notifier.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict) and "url" in body:
        return {**body, "url": SAFE_PUSH_URL}
    return body


@rater.hook
@notifier.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Half the cases address the fuzz tenant: a random DatabaseID stops at 404 before any
    value reaches PostgreSQL, which is where the 500s were."""
    if not path_parameters or "database_id" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, "database_id": ACCOUNT[0]}])


class KeptAlive:
    """An ASGI app whose real lifespan lasts from the first startup until `close()`.

    Schemathesis ends an app's lifespan after every test item (one per operation); restarting
    the rater's consumer group for each operation would cost seconds each and leave half-started
    Kafka clients behind. The real lifespan runs in a task of its own on the loop schemathesis
    serves requests on (where the first startup arrives), so the engine lives where it is used.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.served: Any = None  # the app wrapped to carry the lifespan's state into requests
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await (self.served or self.app)(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._task is None:
                    await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        started: asyncio.Future[None] = self.loop.create_future()

        async def hold() -> None:
            assert self._stop is not None
            try:
                async with LifespanManager(
                    self.app, startup_timeout=60, shutdown_timeout=60
                ) as manager:
                    self.served = manager.app
                    started.set_result(None)
                    await self._stop.wait()
            except Exception as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._task = asyncio.create_task(hold())
        await started

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop the app lives on (from the test's thread)."""
        assert self.loop is not None, "the app has not started"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        if self._task is None or self.loop is None:
            return
        stop, task = self._stop, self._task

        async def finish() -> None:
            assert stop is not None
            stop.set()
            await task

        self.run(finish())


async def _seed_account(app: Any) -> None:
    """The fuzz tenant and API account, made through the admin API itself."""
    database_id, account, password = ACCOUNT
    admin = _auth_headers("/v1/admin/")
    base = f"/v1/admin/tenants/{database_id}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rater") as client:
        (await client.put(base, json={"name": "fuzz"}, headers=admin)).raise_for_status()
        (
            await client.put(
                f"{base}/api-accounts/{account}", json={"password": password}, headers=admin
            )
        ).raise_for_status()


@pytest.fixture(scope="module")
def apps(infra: Infra) -> Iterator[dict[str, KeptAlive]]:
    infra.create_topics(NAMESPACE)
    common = infra.app_settings(NAMESPACE)
    built = {
        "ingest": KeptAlive(create_ingest(IngestSettings(**common))),
        "rater": KeptAlive(create_rater(RaterSettings(**common, rater_group="fuzz-rater"))),
        "notifier": KeptAlive(
            # Private URLs allowed: the check would otherwise resolve fuzzed host names in DNS.
            create_notifier(
                NotifierSettings(
                    **common, notifier_group="fuzz-notifier", allow_private_webhooks=True
                )
            )
        ),
    }
    try:
        for name, schema in (("ingest", ingest), ("rater", rater), ("notifier", notifier)):
            # Any call starts the lifespan on schemathesis' loop.
            schema["/healthz"]["GET"].Case().call(app=built[name])
        built["rater"].run(_seed_account(built["rater"].served))
        yield built
    finally:
        for app in built.values():
            app.close()


_HYPOTHESIS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _call(case: Any, app: Any) -> None:
    headers = _auth_headers(case.path)
    if case.path == "/readyz":
        # 503 is how /readyz says "not ready" (documented); no other 5xx, and every other
        # check still applies.
        response = case.call(app=app, headers=headers)
        assert response.status_code < 500 or response.status_code == 503, response.text
        case.validate_response(response, excluded_checks=[not_a_server_error], headers=headers)
        return
    case.call_and_validate(app=app, headers=headers)


@ingest.parametrize()
@_HYPOTHESIS
def test_ingest_answers_conform_and_never_500(case: Any, apps: dict[str, Any]) -> None:
    _call(case, apps["ingest"])


@rater.parametrize()
@_HYPOTHESIS
def test_rater_answers_conform_and_never_500(case: Any, apps: dict[str, Any]) -> None:
    _call(case, apps["rater"])


@notifier.parametrize()
@_HYPOTHESIS
def test_notifier_answers_conform_and_never_500(case: Any, apps: dict[str, Any]) -> None:
    _call(case, apps["notifier"])


def test_fuzzed_subscriptions_only_ever_point_at_the_discard_port(
    infra: Infra, apps: dict[str, Any]
) -> None:
    """Runs after the notifier's fuzzing (file order): the map_body hook held."""

    async def urls() -> set[str]:
        conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT url FROM subscription WHERE database_id = $1", ACCOUNT[0]
            )
        finally:
            await conn.close()
        return {r["url"] for r in rows}

    assert asyncio.run(urls()) == {SAFE_PUSH_URL}

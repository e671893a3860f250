"""What every HTTP request leaves for operators: a request id in its logs and its answer, and
its latency by route template, method and status code.

One pure ASGI middleware does both, so each request pays for one extra layer, not two: the
compat submission route is every PBX's hot path (cdr_ingest.routes), and a Starlette
`BaseHTTPMiddleware` or a second wrapper of `send` shows in its profile.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars, unbind_contextvars

# No `<name>_created` series: one more per counter and histogram child (a gauge family of
# its own in the text format) for a start time no panel uses; `rate()` copes with restarts.
disable_created_metrics()

HTTP_SECONDS = Histogram(
    "cdrflow_http_request_duration_seconds",
    "HTTP requests by route template, method and status code, and their latency "
    "(from the request's arrival to the start of its answer; _count is the request count)",
    ["route", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# A path no route matched: one label value, not one per path a scanner tries.
UNMATCHED = "unmatched"
REQUEST_ID_HEADER = b"x-request-id"
# An incoming X-Request-ID is kept when it is short and plain (a proxy's or a client's
# correlation id); anything else (long, spaces, quotes, control bytes) is replaced, so a
# caller cannot put arbitrary text into every log line of its request.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")

_Observe = Callable[[float], None]
# Label children by (route template, method, status): looked up once each, since a
# `labels()` call per request costs more than the observation itself.
_children: dict[tuple[str, str, int], _Observe] = {}


def _observer(route: str, method: str, status: int) -> _Observe:
    key = (route, method, status)
    found = _children.get(key)
    if found is None:
        found = _children[key] = HTTP_SECONDS.labels(route, method, str(status)).observe
    return found


def request_id_of(scope: Scope) -> bytes:
    """The request's X-Request-ID when it is sane, else a new random one (16 hex digits)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.fullmatch(value):
                return bytes(value)
            break
    return os.urandom(8).hex().encode()


class RequestObserver:
    """Binds `request_id` into the log context (structlog contextvars) for the request's
    lines, answers it in `X-Request-ID`, and observes the request in HTTP_SECONDS under the
    route *template* the router matched (`/v1/admin/tenants/{database_id}`), never the raw
    path. Non-HTTP scopes (lifespan) pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id_of(scope)
        header = (REQUEST_ID_HEADER, rid)
        status = 500  # what the client gets if the app raises before answering

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                # Latency to the start of the answer: a streamed body's length is the
                # client's pace, not ours.
                _observer(_route(scope), scope["method"], status)(time.perf_counter() - started)
                status = 0  # observed
            await send(message)

        tokens = bind_contextvars(request_id=rid.decode())
        try:
            await self.app(scope, receive, answer)
        finally:
            if status:  # it raised (or never answered): counted as the 500 the client sees
                _observer(_route(scope), scope["method"], status)(time.perf_counter() - started)
            reset_contextvars(**tokens)
            # Bound by the request's code once known (cdrmodel.principals, bind_path_ids);
            # they must not outlive the request where requests share a context (in-process
            # tests; uvicorn runs each request in a task of its own).
            unbind_contextvars("tenant", "cdr_id")


def _route(scope: Scope) -> str:
    # Starlette's router leaves the route it matched in the scope.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def bind_path_ids(path_params: Mapping[str, Any]) -> None:
    """An admin request about one tenant (`{database_id}` in its path) or one record
    (`{cdr_id}`) names them in its log lines, as an API account's request names its tenant."""
    tenant = path_params.get("database_id")
    if tenant is not None:
        bind_contextvars(tenant=str(tenant))
    cdr_id = path_params.get("cdr_id")
    if cdr_id is not None:
        bind_contextvars(cdr_id=str(cdr_id))

"""Ingest HTTP routes: the seed-000 compat endpoint (and, later, /v1/cdrs and PBX adapters).

The compat endpoint is every PBX's hot path, so it is served twice over: `compat_route` is a
plain Starlette route around a bare ASGI callable, placed first in the app (no request object,
no FastAPI dependency solving, no response class: a profile under load showed those costing
more CPU than the submission itself), and the FastAPI operations below stay registered for the
OpenAPI document and behave the same if they are ever reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cdr_ingest.dedupe import key_for
from cdr_ingest.deps import IngestState
from cdr_ingest.service import UNAVAILABLE, Rejected, build_compat_event
from cdrmodel.principals import AuthError

router = APIRouter()

SUBMISSIONS = Counter(
    "cdrflow_ingest_submissions_total", "CDR submissions by contract code", ["endpoint", "code"]
)


async def _params(request: Request) -> dict[str, str]:
    """Query string and (POST) form body, names lower-cased (they match case-insensitively)."""
    params = {k.lower(): v for k, v in request.query_params.items()}
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key.lower()] = value
    return params


_COUNTED: dict[tuple[str, int], Callable[[float], None]] = {}


def count_submissions(endpoint: str, code: int, n: int = 1) -> None:
    """`n` submissions answered `code` at `endpoint` (one labelled child each, looked up
    once: a labels() call per request shows in the compat route's profile)."""
    inc = _COUNTED.get((endpoint, code))
    if inc is None:
        inc = _COUNTED[endpoint, code] = SUBMISSIONS.labels(endpoint, str(code)).inc
    inc(n)


def _count(code: int) -> None:
    count_submissions("api_submitcdr", code)


def _answer(code: int) -> PlainTextResponse:
    _count(code)
    return PlainTextResponse(str(code))


def _query(scope: Scope) -> dict[str, str]:
    """The query string, names lower-cased (they match case-insensitively); a name given
    twice (in any case) takes its last value.

    Decoded as `parse_qsl(..., keep_blank_values=True)` decodes (latin-1 bytes, `+` as a
    space, percent escapes as UTF-8), but fields without escapes, which is nearly all of
    them, are taken as they are: parse_qsl was a tenth of the route's CPU.
    """
    params: dict[str, str] = {}
    for field in scope["query_string"].decode("latin-1").split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name = unquote(name.replace("+", " "))
            value = unquote(value.replace("+", " "))
        params[name.lower()] = value
    return params


class _CompatSubmit:
    """A bare ASGI app (an instance, so Starlette's Route does not wrap it as an endpoint)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's router leaves only its own routes in the scope; the HTTP metrics label
        # requests by the route found there (cdrmodel.observe).
        scope["route"] = compat_route
        await _compat_asgi(scope, receive, send)


async def _compat_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] == "POST":
        # Form bodies are rare (PBX scripts GET); Starlette's form parser handles them.
        params = await _params(Request(scope, receive))
    else:
        params = _query(scope)
    client = scope.get("client")
    code = await _decide(scope["state"]["ingest"], params, client[0] if client else None)
    _count(code)
    body = str(code).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Placed first among the app's routes (app.py). Starlette adds HEAD to every GET route; a HEAD
# must not submit a record (FastAPI's operation answers it 405), so it is taken out again.
compat_route = Route("/api_submitcdr.aspx", _CompatSubmit(), methods=["GET", "POST"])
assert compat_route.methods is not None
compat_route.methods.discard("HEAD")


# What PBXs get: the code alone, as text/plain (never JSON, whatever went wrong).
_CODE_CONTENT = {
    "text/plain": {"schema": {"type": "string", "pattern": "^[0-9]+$", "example": "0"}}
}

_COMPAT_PARAMS = [
    ("DatabaseID", True, "The API DatabaseID."),
    ("APIAccountID", True, "The API AccountID."),
    ("APIPassword", True, "The API password."),
    ("OriginatingNumber", True, "The calling number, at most 20 characters."),
    ("DestinationNumber", True, "The dialled number, at most 20 characters."),
    ("Duration", True, "Seconds, a whole number 0..86400."),
    (
        "StartDateTime",
        False,
        "YYYY-MMM-DD HH:MM:SS, YYYY-MM-DD HH:MM:SS or ISO 8601; "
        "without an offset, in the tenant's time zone; absent: arrival minus Duration.",
    ),
    ("AccountCode", False, "At most 20 characters."),
    ("ExternalID", False, "The PBX's id of the call (Asterisk uniqueid), at most 15 characters."),
    (
        "Record",
        False,
        "The call's recording URL (seed 003's `record`; also `RecordingURL`): http or https, "
        "at most 2048 characters, percent-encoded like any parameter; else 50422.",
    ),
]


_COMPAT_ROUTE: dict[str, Any] = {
    "response_class": PlainTextResponse,
    "summary": "Submit one CDR (seed 000): answers the contract code alone, as text/plain",
    "description": "Parameters in the query string or, for POST, a form body; names match "
    "case-insensitively. `0` is answered only once the record is durably on Kafka.",
    "tags": ["submit"],
    "responses": {200: {"description": "The contract code alone", "content": _CODE_CONTENT}},
    "openapi_extra": {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": required,
                "description": text,
                "schema": {"type": "string"},
            }
            for name, required, text in _COMPAT_PARAMS
        ]
    },
}


# Two decorators, not one api_route: each method needs its own operationId in the document.
@router.get("/api_submitcdr.aspx", operation_id="api_submitcdr_get", **_COMPAT_ROUTE)
@router.post("/api_submitcdr.aspx", operation_id="api_submitcdr_post", **_COMPAT_ROUTE)
async def api_submitcdr(request: Request) -> PlainTextResponse:
    # Documents the operations; compat_route, ahead of it, serves them.
    params = await _params(request)
    client = request.client.host if request.client else None
    return _answer(await _decide(request.state.ingest, params, client))


async def _decide(state: IngestState, params: dict[str, str], client: str | None) -> int:
    """The contract code for one submission (parameter names lower-cased)."""
    try:
        principal = await state.directory.authenticate(
            params.get("databaseid"),
            params.get("apiaccountid"),
            params.get("apipassword"),
            client=client,
        )
        now = state.clock()
        event = build_compat_event(params, principal, now=now)
    except (AuthError, Rejected) as exc:
        assert exc.code is not None
        return exc.code
    except (SQLAlchemyError, OSError):
        return UNAVAILABLE  # PostgreSQL unreachable: nothing stored, retry later
    start_given = bool(params.get("startdatetime", "").strip())
    # Decided with the account's other submissions waiting now (groupcommit.py).
    outcome = await state.group.submit(
        principal,
        event=event,
        key=key_for(event, start_given=start_given),
        now=now,
    )
    return outcome.code

"""Ingest HTTP routes: the seed-000 compat endpoint (and, later, /v1/cdrs and PBX adapters)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

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


def _answer(code: int) -> PlainTextResponse:
    SUBMISSIONS.labels("api_submitcdr", str(code)).inc()
    return PlainTextResponse(str(code))


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
    # The hot path of every PBX: no FastAPI dependencies (they cost ~a third of the time).
    state: IngestState = request.state.ingest
    params = await _params(request)
    try:
        principal = await state.directory.authenticate(
            params.get("databaseid"),
            params.get("apiaccountid"),
            params.get("apipassword"),
            client=request.client.host if request.client else None,
        )
        now = state.clock()
        event = build_compat_event(params, principal, now=now)
    except (AuthError, Rejected) as exc:
        assert exc.code is not None
        return _answer(exc.code)
    except (SQLAlchemyError, OSError):
        return _answer(UNAVAILABLE)  # PostgreSQL unreachable: nothing stored, retry later
    start_given = bool(params.get("startdatetime", "").strip())
    # Decided with the account's other submissions waiting now (groupcommit.py).
    outcome = await state.group.submit(
        principal,
        event=event,
        key=key_for(event, start_given=start_given),
        now=now,
    )
    return _answer(outcome.code)

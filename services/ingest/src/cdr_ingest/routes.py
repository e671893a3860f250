"""Ingest HTTP routes: the seed-000 compat endpoint (and, later, /v1/cdrs and PBX adapters)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from cdr_ingest.deps import StateDep
from cdr_ingest.publisher import PublishFailed
from cdr_ingest.service import ACCEPTED, UNAVAILABLE, Rejected, build_compat_event
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


@router.api_route(
    "/api_submitcdr.aspx",
    methods=["GET", "POST"],
    response_class=PlainTextResponse,
    summary="Submit one CDR (seed 000): answers the contract code alone, as text/plain",
    tags=["submit"],
)
async def api_submitcdr(request: Request, state: StateDep) -> PlainTextResponse:
    params = await _params(request)
    try:
        principal = await state.directory.authenticate(
            params.get("databaseid"), params.get("apiaccountid"), params.get("apipassword")
        )
        event = build_compat_event(params, principal, now=datetime.now(UTC))
    except (AuthError, Rejected) as exc:
        assert exc.code is not None
        return _answer(exc.code)
    except (SQLAlchemyError, OSError):
        return _answer(UNAVAILABLE)  # PostgreSQL unreachable: nothing stored, retry later
    try:
        await state.publisher.publish(event)
    except PublishFailed:
        return _answer(UNAVAILABLE)
    return _answer(ACCEPTED)

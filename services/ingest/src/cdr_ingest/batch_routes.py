"""Batch submission routes: `POST /v1/cdrs` and the FreeSWITCH and Asterisk adapters.

Each request is one API account's batch: HTTP Basic auth, the body read under a hard cap, the
parser's per-record results, and every parsed record decided by ONE `Submitter.submit` call
(one dedupe statement, one produce round trip, one acknowledge), so a 10,000-record body
costs a handful of round trips, not 10,000.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from cdr_ingest.dedupe import DedupeKey, Outcome, key_for, source_key
from cdr_ingest.deps import IngestState
from cdr_ingest.parsing import (
    MAX_BODY_BYTES,
    MAX_RECORDS,
    BodyTooLarge,
    Parsed,
    ParseResult,
    Refused,
    gc_paused,
    parse_asterisk,
    parse_freeswitch,
    parse_native,
    resolve_timezone,
)
from cdr_ingest.routes import count_submissions
from cdr_ingest.service import ACCEPTED, DAILY_LIMIT, DUPLICATE, UNAVAILABLE
from cdrmodel.errors import error_responses
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import DB_UNKNOWN, AuthError, Principal, split_login

router = APIRouter(tags=["submit"])

CHALLENGE = {"WWW-Authenticate": 'Basic realm="cdrflow"'}
RETRY_AFTER_SECONDS = 5
_OUTCOME_MESSAGES = {
    DUPLICATE: "this call record has already been submitted",
    DAILY_LIMIT: "the API account's daily limit is used up",
    UNAVAILABLE: "temporarily unable to accept; nothing was stored; retry later",
}

Parser = Callable[[bytes, Principal, datetime], list[ParseResult]]


class RecordResult(BaseModel):
    index: int = Field(description="The record's position in the body, from 0")
    code: int = Field(description="0 accepted, else the contract code (504xx)")
    id: UUID | None = Field(
        description="The cdr_id: of this record when accepted, of the first submission for 50421"
    )
    message: str | None = Field(None, description="Why the record was not taken")


class BatchAnswer(BaseModel):
    accepted: int = Field(description="How many records were answered 0")
    results: list[RecordResult] = Field(description="One per record, in the body's order")


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    # default=str: a cdr_id found in PostgreSQL is asyncpg's UUID type, which orjson skips.
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _unavailable(message: str) -> Response:
    return _json(
        503,
        {"code": UNAVAILABLE, "message": message},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def basic_credentials(header: str | None) -> tuple[str | None, str | None, str | None]:
    """(DatabaseID, APIAccountID, password) from an HTTP Basic header; AuthError 50443 when
    no DatabaseID can be read from it at all."""
    if not header:
        raise AuthError(
            "credentials missing: send HTTP Basic auth, user DatabaseID/APIAccountID, "
            "password the API password",
            code=DB_UNKNOWN,
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthError(f"{scheme[:20]!r} auth is not taken here; use HTTP Basic", code=DB_UNKNOWN)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("HTTP Basic credentials are not base64 UTF-8", code=DB_UNKNOWN) from None
    user, colon, password = decoded.partition(":")
    database_id, account_id = split_login(user)
    return database_id, account_id, password if colon else None


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes the cap: a 1 GB upload is never buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(_too_large(f"body is {int(declared)} bytes"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(_too_large("body is larger"))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> str:
    return f"{what}; the limit is {MAX_BODY_BYTES} bytes (10 MiB) and {MAX_RECORDS:,} records"


def dedupe_key(parsed: Parsed) -> DedupeKey | None:
    """The format's own identity when the parser set one, else the contract's rule."""
    if parsed.dedupe_key is not None:
        return source_key(parsed.dedupe_key)
    return key_for(parsed.event, start_given=parsed.start_given)


async def _submit(request: Request, endpoint: str, parse: Parser) -> Response:
    state: IngestState = request.state.ingest
    try:
        database_id, account_id, password = basic_credentials(request.headers.get("authorization"))
        principal = await state.directory.authenticate(
            database_id,
            account_id,
            password,
            client=request.client.host if request.client else None,
        )
    except AuthError as exc:
        assert exc.code is not None
        count_submissions(endpoint, exc.code)
        return _json(401, exc.body(), headers=CHALLENGE)
    except (SQLAlchemyError, OSError):
        count_submissions(endpoint, UNAVAILABLE)
        return _unavailable("PostgreSQL unreachable; nothing was stored, retry later")
    body = await _read_body(request)
    now = state.clock()
    results = parse(body, principal, now)
    events, keys = to_submit(results)
    outcomes: list[Outcome] = []
    if events:
        outcomes = await state.submitter.submit(
            database_id=principal.database_id,
            api_account=principal.api_account_id,
            timezone=principal.timezone,
            daily_limit=principal.daily_limit,
            events=events,
            keys=keys,
            now=now,
        )
    answers, counts = _answers(results, outcomes)
    for code, n in counts.items():
        count_submissions(endpoint, code, n)
    if outcomes and all(o.code == UNAVAILABLE for o in outcomes):
        # Nothing of the request was taken: one answer a client's retry logic understands.
        return _unavailable("PostgreSQL or Kafka unreachable; nothing was stored, retry later")
    accepted = sum(1 for o in outcomes if o.code == ACCEPTED)
    return _json(200, {"accepted": accepted, "results": answers})


def to_submit(results: list[ParseResult]) -> tuple[list[CdrSubmitted], list[DedupeKey | None]]:
    """The parsed records' events and dedupe keys, in order, in one pass."""
    events: list[CdrSubmitted] = []
    keys: list[DedupeKey | None] = []
    with gc_paused():
        for result in results:
            if type(result) is Parsed:
                events.append(result.event)
                keys.append(dedupe_key(result))
    return events, keys


def _answers(
    results: list[ParseResult], outcomes: list[Outcome]
) -> tuple[list[dict[str, Any]], Counter[int]]:
    """One answer per record in the body's order (the parsed records take their outcomes in
    turn), and how many answers carry each code."""
    decided = iter(outcomes)
    answers: list[dict[str, Any]] = []
    append = answers.append
    counts: Counter[int] = Counter()
    with gc_paused():
        for i, result in enumerate(results):
            if type(result) is Refused:
                append({"index": i, "code": result.code, "id": None, "message": result.message})
                counts[result.code] += 1
                continue
            code, cdr_id = next(decided)
            if code == ACCEPTED:
                append({"index": i, "code": code, "id": cdr_id})
            else:
                message = _OUTCOME_MESSAGES.get(code, "not accepted")
                append({"index": i, "code": code, "id": cdr_id, "message": message})
            counts[code] += 1
    return answers, counts


def _documented(summary: str, description: str, content: dict[str, Any]) -> dict[str, Any]:
    retry_after = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
    responses = error_responses(400, 401, 413, 422, 503)
    responses[200] = {"model": BatchAnswer, "description": "One result per record, in order"}
    responses[401] = {
        **responses[401],
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
    responses[503] = {**responses[503], "headers": retry_after}
    return {
        "summary": summary,
        "description": description,
        "response_class": Response,
        "responses": responses,
        "openapi_extra": {"requestBody": {"required": True, "content": content}},
    }


_TEXT = {"type": "string"}
_WHOLE = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
_NATIVE_RECORD = {
    "type": "object",
    "description": "Contract field names, or seed 003's (`caller`, `target`, `time`, ...)",
    "properties": {
        "originating_number": _TEXT,
        "destination_number": _TEXT,
        "start_time": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "duration": _WHOLE,
        "account_code": _TEXT,
        "external_id": _TEXT,
        "disposition": {
            "type": "string",
            "enum": ["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"],
        },
        "ring_seconds": _WHOLE,
        "direction": {"type": "string", "enum": ["inbound", "outbound"]},
        "extra": {"type": "object"},
    },
    "additionalProperties": True,
}
_LIMITS = f"At most {MAX_RECORDS:,} records and {MAX_BODY_BYTES} bytes (10 MiB), else 413."


@router.post(
    "/v1/cdrs",
    operation_id="submit_cdrs",
    **_documented(
        "Submit CDRs in a batch: one JSON object, an array, or NDJSON",
        "HTTP Basic auth, user `DatabaseID/APIAccountID`. Content-Type "
        "`application/x-ndjson` (or `application/ndjson`, `application/jsonl`) reads NDJSON, "
        f"anything else JSON. {_LIMITS} Each record answers its contract code.",
        {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _NATIVE_RECORD,
                        {"type": "array", "items": _NATIVE_RECORD, "maxItems": MAX_RECORDS},
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One record a line"}
            },
        },
    ),
)
async def submit_cdrs(request: Request) -> Response:
    content_type = request.headers.get("content-type")
    return await _submit(
        request,
        "v1_cdrs",
        lambda body, principal, now: parse_native(
            body, content_type=content_type, principal=principal, now=now
        ),
    )


@router.post(
    "/v1/pbx/freeswitch",
    operation_id="submit_freeswitch",
    **_documented(
        "Submit FreeSWITCH CDRs: the JSON body mod_json_cdr posts",
        "One CDR (a leg) as mod_json_cdr writes it, or an array of them. The A-leg is billed, "
        f"keyed by its uuid; a B-leg answers 50462 and is not stored. {_LIMITS}",
        {
            "application/json": {
                "schema": {
                    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]
                }
            }
        },
    ),
)
async def submit_freeswitch(request: Request) -> Response:
    return await _submit(
        request,
        "pbx_freeswitch",
        lambda body, principal, now: parse_freeswitch(body, principal=principal, now=now),
    )


@router.post(
    "/v1/pbx/asterisk",
    operation_id="submit_asterisk",
    **_documented(
        "Submit Asterisk CDRs: lines of cdr_csv's Master.csv",
        "Lines in Master.csv column order (16 to 21 columns), times in the PBX's local time: "
        f"the tenant's zone, or `tz`. {_LIMITS} A malformed line answers its own code.",
        {"text/csv": {"schema": {"type": "string"}}},
    ),
)
async def submit_asterisk(
    request: Request,
    tz: Annotated[
        str | None, Query(description="IANA zone of the PBX's clock (default: the tenant's)")
    ] = None,
) -> Response:
    def parse(body: bytes, principal: Principal, now: datetime) -> list[ParseResult]:
        zone = resolve_timezone(tz, principal)
        return parse_asterisk(body, principal=principal, now=now, timezone=zone)

    return await _submit(request, "pbx_asterisk", parse)

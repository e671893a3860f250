"""`GET /billing/feed` (seed 001): a tenant's CDR versions in feed-id order, never skipping.

A billing system asks `fromid=N` (inclusive), gets up to `limit` records with their
`feed_id`, and asks again from `next_fromid`. The feed is a change sequence: a re-rated
record comes again with a new, larger feed id (its `cdr_id` unchanged, its `revision` one
higher); a record changed twice between two reads shows once, as its latest version.
Why no record is ever passed over, even while several raters commit at once:
cdr_notifier.feed_repository and docs/architecture.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from cdr_notifier.csvout import CSV_RESPONSES, csv_bytes, csv_response, record_header, record_row
from cdr_notifier.deps import PrincipalDep, StateDep
from cdr_notifier.feed_repository import feed_page
from cdrmodel.errors import error_responses
from cdrmodel.validation import INT8_MAX

router = APIRouter(tags=["queries"], responses=error_responses(401, 403, 422, 503))

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class FeedFormat(StrEnum):
    json = "json"
    csv = "csv"


class FeedPage(BaseModel):
    """The JSON answer (documentation of the shape; the route writes it with orjson)."""

    status: str = Field(examples=["success"])
    cdr: list[dict[str, Any]] = Field(description="Records as pushed, each with its feed_id")
    next_fromid: int = Field(description="fromid of the next request (last feed_id + 1)")


@router.get(
    "/billing/feed",
    summary="The billing feed: CDR versions with feed id >= fromid, in feed-id order",
    response_model=FeedPage,
    responses=CSV_RESPONSES,
)
async def billing_feed(
    principal: PrincipalDep,
    state: StateDep,
    fromid: int = Query(
        0,
        ge=0,
        le=INT8_MAX,
        description="The first feed id wanted (inclusive): the last"
        " next_fromid, or 0 for everything",
    ),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    format: FeedFormat = Query(FeedFormat.json, description="json, or csv"),
) -> Response:
    async with state.engine.connect() as conn:
        page = await feed_page(
            conn,
            database_id=principal.database_id,
            from_id=fromid,
            limit=limit,
            timezone=principal.timezone,
            currency=principal.currency,
        )
    next_fromid = fromid if page.last_feed_id is None else page.last_feed_id + 1
    if format is FeedFormat.csv:
        records = orjson.loads(page.records)
        response = csv_response(
            csv_bytes(record_header(), (record_row(r) for r in records)),
            filename=f"feed-{fromid}.csv",
        )
        response.headers["X-Next-Fromid"] = str(next_fromid)
        return response
    # The records are PostgreSQL's JSON as it came: wrapped, never parsed again.
    body = b'{"status":"success","cdr":%b,"next_fromid":%d}' % (
        page.records.encode(),
        next_fromid,
    )
    return Response(body, media_type="application/json")

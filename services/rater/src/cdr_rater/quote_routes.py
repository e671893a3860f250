"""Quote and explain, for API accounts (HTTP Basic): what a call would cost, and how a stored
price came about. Both go through `handler.rate_events`, the function the consumer rates with.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from cdr_rater import explain_repository
from cdr_rater.deps import PrincipalDep, StateDep
from cdr_rater.handler import rate_events
from cdr_rater.quote_schemas import ExplainRead, QuoteRead, QuoteRequest
from cdrmodel.errors import NotFound, error_responses
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.money import fmt8
from cdrmodel.timeutil import in_zone

router = APIRouter(tags=["rating"])


@router.post(
    "/v1/rate/quote",
    response_model=QuoteRead,
    summary="Price a hypothetical call, as it would be rated now; nothing is stored or sent",
    responses=error_responses(400, 401, 404, 422, 503),
)
async def quote(body: QuoteRequest, principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    now = datetime.now(UTC)
    disposition = body.disposition or ("ANSWERED" if body.duration > 0 else "NO ANSWER")
    # The event ingest would produce for this call: the consumer's own path prices it.
    event = CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id=principal.database_id,
        api_account=principal.api_account_id,
        source="quote",
        received_at=now,
        originating_number=body.originating_number,
        destination_number=body.destination_number,
        start_time=in_zone(body.start_time, principal.timezone),
        duration=body.duration,
        disposition=disposition,
    )
    async with state.engine.connect() as conn:  # reads only; rolled back when it closes
        configs = await state.plans.configs(conn, [principal.database_id])
    config = configs.get(principal.database_id)
    if config is None:  # removed since the credentials were checked
        raise NotFound(f"no tenant {principal.database_id!r}")
    currency = config.currency
    (row,) = rate_events(
        [event], config.plan, default_packages=config.default_packages, currency=currency, now=now
    )
    total, cost = row["total"], row["cost"]
    return {
        "rated": row["rated"],
        "unrated_reason": row["unrated_reason"],
        "call_type": row["call_type"],
        "call_billing": row["call_billing"],
        "destination_name": row["destination_name"],
        "matched_prefix": row["matched_prefix"],
        "billed_seconds": row["billed_seconds"],
        "rate": fmt8(row["rate"]),
        "total": fmt8(total),
        "cost": fmt8(cost),
        "margin": fmt8(total - cost) if total is not None and cost is not None else None,
        "currency": currency,
        "explanation": row["pricing"],
    }


@router.get(
    "/v1/cdrs/{cdr_id}/explain",
    response_model=ExplainRead,
    summary="How a stored record's price came about, and its re-rates",
    responses=error_responses(401, 404, 422, 503),
)
async def explain(cdr_id: uuid.UUID, principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    async with state.engine.connect() as conn:
        found = await explain_repository.fetch_explained(
            conn, database_id=principal.database_id, cdr_id=cdr_id
        )
    if found is None:  # another tenant's record is as absent as a record never stored
        raise NotFound(f"no CDR {cdr_id}")
    row, history = found
    start = row["start_time"]
    return {
        "cdr_id": row["cdr_id"],
        "revision": row["revision"],
        "rated": row["rated"],
        "unrated_reason": row["unrated_reason"],
        "start_time": start.astimezone(ZoneInfo(principal.timezone)) if start else None,
        "total": fmt8(row["total"]),
        "cost": fmt8(row["cost"]),
        "currency": row["currency"],
        "explanation": row["pricing"],
        "history": history,
    }

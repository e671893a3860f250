"""Query APIs for API accounts: `GET /v1/cdrs` (an account sees only its own tenant)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cdr_notifier import repository
from cdr_notifier.deps import PrincipalDep, StateDep
from cdrmodel.errors import error_responses
from cdrmodel.record import CdrRecord, render_record
from cdrmodel.timeutil import in_zone
from cdrmodel.validation import INT8_MAX, Name

router = APIRouter(tags=["queries"], responses=error_responses(401, 403, 422, 503))


class CdrPage(BaseModel):
    cdrs: list[CdrRecord]
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null at the end")


@router.get(
    "/v1/cdrs",
    response_model=CdrPage,
    summary="Search the account's tenant's CDRs (cursor paging by feed id)",
)
async def list_cdrs(
    principal: PrincipalDep,
    state: StateDep,
    from_: datetime | None = Query(
        None, alias="from", description="ISO 8601; without an offset, the tenant's time zone"
    ),
    to: datetime | None = None,
    rated: bool | None = None,
    call_type: Name | None = None,
    disposition: Name | None = None,
    caller: Name | None = None,
    destination: Name | None = None,
    cursor: int | None = Query(
        None, ge=0, le=INT8_MAX, description="next_cursor of the previous page"
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    zone = principal.timezone
    async with state.engine.connect() as conn:
        rows = await repository.search_cdrs(
            conn,
            database_id=principal.database_id,
            start_from=in_zone(from_, zone) if from_ is not None else None,
            start_to=in_zone(to, zone) if to is not None else None,
            rated=rated,
            call_type=call_type,
            disposition=disposition,
            caller=caller,
            destination=destination,
            after_feed_id=cursor,
            limit=limit,
        )
    records = [render_record(r, timezone=principal.timezone) for r in rows]
    return {
        "cdrs": records,
        "next_cursor": rows[-1]["feed_id"] if len(rows) == limit else None,
    }

"""Admin endpoints that re-price stored CDRs: a start-time correction and a period re-rate."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from cdr_rater.deps import StateDep
from cdrmodel.errors import Unprocessable, error_responses
from cdrmodel.record import CdrRecord, render_record
from cdrmodel.timeutil import in_zone
from cdrmodel.validation import Identifier
from cdrmodel.web import AdminDep

router = APIRouter(
    prefix="/v1/admin/tenants",
    tags=["admin"],
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 404, 422, 503),
)


class StartTimeCorrection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_time: datetime = Field(description="ISO 8601; without an offset, the tenant's zone")


class CorrectedCdr(BaseModel):
    revision: int = Field(description="1 when first stored, +1 at each re-rate that changed it")
    feed_id: int
    record: CdrRecord


class RerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime = Field(alias="from", description="Start times from (inclusive)")
    to: datetime = Field(description="Start times before (exclusive)")
    only_unrated: bool = False


class RerateCounts(BaseModel):
    examined: int = Field(description="Records in the period (only unrated ones if asked)")
    changed: int = Field(description="Re-priced differently: a new revision each, pushed again")
    unchanged: int
    still_unrated: int = Field(description="Examined records unrated after the re-rate")


@router.patch(
    "/{database_id}/cdrs/{cdr_id}",
    response_model=CorrectedCdr,
    responses=error_responses(409),
    summary="Correct the start time of a record held unrated; it is re-rated at once",
)
async def patch_cdr(
    database_id: Identifier, cdr_id: uuid.UUID, body: StartTimeCorrection, state: StateDep
) -> CorrectedCdr:
    row, zone = await state.rerater.correct(database_id, cdr_id, start_time=body.start_time)
    return CorrectedCdr(
        revision=row["revision"],
        feed_id=row["feed_id"],
        record=CdrRecord.model_validate(render_record(row, timezone=zone)),
    )


@router.post(
    "/{database_id}/rerate",
    response_model=RerateCounts,
    summary="Re-price the CDRs that started in a period with today's configuration",
)
async def post_rerate(
    database_id: Identifier, body: RerateRequest, state: StateDep
) -> RerateCounts:
    zone = await state.rerater.zone(database_id)
    start, end = in_zone(body.from_, zone), in_zone(body.to, zone)
    if start >= end:
        raise Unprocessable("'from' must be before 'to'")
    counts = await state.rerater.period(
        database_id, start=start, end=end, only_unrated=body.only_unrated
    )
    return RerateCounts(**asdict(counts))

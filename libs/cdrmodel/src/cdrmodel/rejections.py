"""Admin route listing rejected events (records a consumer set aside), shared by the services."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from cdrmodel import repository
from cdrmodel.errors import error_responses
from cdrmodel.validation import INT8_MAX, Name
from cdrmodel.web import AdminDep, ops_state

router = APIRouter(
    tags=["admin"], dependencies=[AdminDep], responses=error_responses(401, 422, 503)
)

_PREVIEW = 2000


class RejectedEventRead(BaseModel):
    id: int
    stage: str = Field(description="The consumer group that set the record aside.")
    topic: str
    partition: int
    offset: int
    reason: str = Field(description="malformed, unstorable, unknown_tenant, ...")
    error: str
    rejected_at: datetime
    key: str | None = Field(description="The message key as UTF-8 (invalid bytes replaced).")
    value_base64: str | None = Field(description="The message bytes exactly as consumed.")
    value_preview: str | None = Field(
        description=f"The first {_PREVIEW} bytes as UTF-8, invalid bytes replaced."
    )
    value_size: int


class RejectedEventList(BaseModel):
    rejected_events: list[RejectedEventRead]
    next_before_id: int | None = Field(
        description="Pass as before_id for the next (older) page; null on the last page."
    )


def _utf8(raw: bytes | None, limit: int | None = None) -> str | None:
    if raw is None:
        return None
    return raw[:limit].decode("utf-8", errors="replace")


@router.get(
    "/v1/admin/rejected-events",
    summary="Records a consumer could not process, newest first",
    response_model=RejectedEventList,
)
async def list_rejected_events(
    request: Request,
    stage: Annotated[Name | None, Query(description="Only this consumer group.")] = None,
    reason: Annotated[Name | None, Query(description="Only this reason.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=INT8_MAX, description="Page: ids below this.")
    ] = None,
) -> RejectedEventList:
    async with ops_state(request).engine.connect() as conn:
        rows = await repository.rejected_events(
            conn, stage=stage, reason=reason, before_id=before_id, limit=limit + 1
        )
    page = rows[:limit]
    return RejectedEventList(
        rejected_events=[
            RejectedEventRead(
                id=r["id"],
                stage=r["stage"],
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                reason=r["reason"],
                error=r["error"],
                rejected_at=r["rejected_at"],
                key=_utf8(r["key"]),
                value_base64=None if r["value"] is None else base64.b64encode(r["value"]).decode(),
                value_preview=_utf8(r["value"], _PREVIEW),
                value_size=len(r["value"] or b""),
            )
            for r in page
        ],
        next_before_id=page[-1]["id"] if len(rows) > limit else None,
    )

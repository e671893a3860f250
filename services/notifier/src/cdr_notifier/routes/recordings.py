"""`GET /v1/cdrs/{cdr_id}/recording`: a redirect to where the call's recording is, for API
accounts of the CDR's tenant (reading from their allowed networks, as every query)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cdr_notifier import recording_repository
from cdr_notifier.deps import PrincipalDep, StateDep
from cdrmodel.errors import NotFound, error_responses

router = APIRouter(tags=["queries"])


class RecordingRead(BaseModel):
    cdr_id: str
    record: str = Field(description="The recording URL the PBX sent (seed 003 `record`)")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    302: {
        "model": RecordingRead,
        "description": "Found: `Location` is the recording URL; the body names it too",
        "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
    },
    **error_responses(401, 403, 404, 422, 503),
}


@router.get(
    "/v1/cdrs/{cdr_id}/recording",
    status_code=302,
    response_class=JSONResponse,
    responses=_RESPONSES,
    summary="Redirect (302) to the CDR's recording",
    description="The recording URL the PBX sent with the CDR (`record`). 404 when the CDR "
    "is not one of the account's tenant's (another tenant's id looks like one that does not "
    "exist) or has no recording. The URL is the PBX's: it is neither fetched nor proxied.",
)
async def get_recording(cdr_id: str, principal: PrincipalDep, state: StateDep) -> JSONResponse:
    try:
        key = uuid.UUID(cdr_id)
    except ValueError:
        key = None
    found, url = False, None
    if key is not None:
        async with state.engine.connect() as conn:
            found, url = await recording_repository.recording_url(
                conn, database_id=principal.database_id, cdr_id=key
            )
    if not found:
        raise NotFound(f"no CDR {cdr_id!r} in tenant {principal.database_id}")
    if url is None:
        raise NotFound(f"CDR {cdr_id} has no recording")
    return JSONResponse(
        {"cdr_id": str(key), "record": url},
        status_code=302,
        # private, no-store: the answer depends on who asks and from where, and recording
        # URLs are often short-lived signed links.
        headers={"Location": url, "Cache-Control": "private, no-store"},
    )

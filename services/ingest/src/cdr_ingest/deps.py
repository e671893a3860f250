"""The typed state the ingest lifespan builds (routes read it from request.state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_ingest.dedupe import Submitter
from cdr_ingest.groupcommit import GroupCommit
from cdr_ingest.publisher import Publisher
from cdrmodel.principals import PrincipalDirectory
from cdrmodel.web import OpsState


@dataclass
class IngestState:
    engine: AsyncEngine
    directory: PrincipalDirectory
    publisher: Publisher
    submitter: Submitter
    group: GroupCommit  # the compat route's single records, decided together per account
    # The arrival time (and so the daily limit's day); tests move it across midnight.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


class IngestLifespanState(TypedDict):
    """What the lifespan yields; Starlette hands a copy to each request as request.state."""

    ops: OpsState
    ingest: IngestState

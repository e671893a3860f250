"""Group commit: concurrent single-record submissions of one API account share one decision.

A PBX fleet sends one record per request, each waiting for its answer; deciding each alone
costs an admit transaction, a produce round trip and an acknowledge transaction per record.
Here the submissions of one account (and tenant day) that arrive while a decision for that
account is already running wait for it to finish and are then decided together, in one
`Submitter.submit` call, which keeps every rule of dedupe.py (keys repeated in one list: the
first decides, the rest follow; the limit's slots go in arrival order).

Adaptive, with no timer: a submission that finds its account idle starts a decision at once
(it only yields to the event loop, so requests already parsed in the same loop turn join it);
while `max_flushes` decisions of the account are running, newcomers gather for the next one.
Under light load nothing waits for a batch to fill; under heavy load the groups grow with the
round-trip time, which is what spreads its cost. A decision that fails in a way the Submitter
does not already answer (a bug, a cancelled task) answers its own group 50503 and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from cdr_ingest.dedupe import DedupeKey, Outcome, Submitter, tenant_day
from cdr_ingest.service import UNAVAILABLE
from cdrmodel import tracing
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import Principal

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

# (database_id, api_account, timezone, daily_limit, tenant day): what one decision shares.
LaneKey = tuple[str, str, str, int | None, date]


@dataclass(slots=True)
class _Waiting:
    event: CdrSubmitted
    key: DedupeKey | None
    now: datetime
    answer: asyncio.Future[Outcome]
    origin: Context | None  # the request's trace context (tracing on)


@dataclass(slots=True)
class _Lane:
    waiting: list[_Waiting] = field(default_factory=list)
    flushes: int = 0


def _answer(group: Sequence[_Waiting], outcomes: Sequence[Outcome]) -> None:
    for waiting, outcome in zip(group, outcomes, strict=True):
        if not waiting.answer.done():  # its request may have been cancelled meanwhile
            waiting.answer.set_result(outcome)


class GroupCommit:
    """Gathers single-record submissions per account into `Submitter.submit` calls."""

    def __init__(self, submitter: Submitter, *, max_group: int = 256, max_flushes: int = 1):
        if max_group < 1 or max_flushes < 1:
            raise ValueError("max_group and max_flushes must be at least 1")
        self._submitter = submitter
        self._max_group = max_group
        self._max_flushes = max_flushes
        self._lanes: dict[LaneKey, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, principal: Principal, *, event: CdrSubmitted, key: DedupeKey | None, now: datetime
    ) -> Outcome:
        """The record's Outcome, decided with whatever else of its account is waiting."""
        lane_key: LaneKey = (
            principal.database_id,
            principal.api_account_id,
            principal.timezone,
            principal.daily_limit,
            tenant_day(now, principal.timezone),
        )
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        lane.waiting.append(_Waiting(event, key, now, answer, tracing.current()))
        if lane.flushes < self._max_flushes:
            lane.flushes += 1
            # A task of its own: a client that hangs up must not cancel the others' decision.
            task = asyncio.create_task(self._drain(lane_key, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Shielded: the decision may already have produced this record; cancelling the wait
        # (a client gone) must not break the future the decision answers into.
        return await asyncio.shield(answer)

    async def _drain(self, lane_key: LaneKey, lane: _Lane) -> None:
        group: list[_Waiting] = []
        try:
            while lane.waiting:
                group = lane.waiting[: self._max_group]
                del lane.waiting[: self._max_group]
                _answer(group, await self._decide(lane_key, group))
                group = []
        finally:
            # Cancelled (shutdown) mid-decision: whoever still waits is told to retry.
            lost = [w for w in group if not w.answer.done()]
            if lane.flushes == 1:
                lost += lane.waiting
                lane.waiting.clear()
            _answer(lost, [Outcome(UNAVAILABLE)] * len(lost))
            lane.flushes -= 1
            if lane.flushes == 0 and self._lanes.get(lane_key) is lane:
                del self._lanes[lane_key]

    async def _decide(self, lane_key: LaneKey, group: Sequence[_Waiting]) -> list[Outcome]:
        database_id, api_account, timezone, daily_limit, _ = lane_key
        origin = group[0].origin
        try:
            decision = self._submitter.submit(
                database_id=database_id,
                api_account=api_account,
                timezone=timezone,
                daily_limit=daily_limit,
                events=[w.event for w in group],
                keys=[w.key for w in group],
                now=group[0].now,  # the lane is one tenant day: any member's clock names it
                origins=None if origin is None else [w.origin for w in group],
            )
            if origin is None:
                return await decision
            # Tracing on: the group's statements are recorded in its first request's trace,
            # and each record produced continues its own request's (`origins`).
            with tracing.within(origin):
                return await decision
        except Exception:
            # The Submitter answers store and broker trouble itself; this is anything else.
            # The group is told 50503 (retry) and the service keeps serving.
            log.exception("deciding a group of %d submissions failed", len(group))
            return [Outcome(UNAVAILABLE)] * len(group)

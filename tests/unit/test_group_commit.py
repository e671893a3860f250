"""The batching of groupcommit.py alone: who waits for whom, group sizes, cancellations.

The decisions themselves are the Submitter's, tested against real PostgreSQL and Tansu in
tests/inprocess; here a recording stand-in shows only how submissions are grouped.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from cdr_ingest.dedupe import Outcome
from cdr_ingest.groupcommit import GroupCommit
from cdr_ingest.service import ACCEPTED, UNAVAILABLE
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.principals import Principal

NOW = datetime(2026, 1, 2, 12, tzinfo=UTC)


class Recorder:
    """Answers every record 0 after `gate` opens, recording the size of each call."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def submit(self, *, events: list[CdrSubmitted], **kwargs: Any) -> list[Outcome]:
        self.calls.append(len(events))
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("boom")
        return [Outcome(ACCEPTED, e.cdr_id) for e in events]


def _event() -> CdrSubmitted:
    return CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id="DB",
        api_account="A",
        received_at=NOW,
        originating_number="1",
        destination_number="2",
        duration=1,
    )


def _submit(group: GroupCommit, account: str = "A", now: datetime = NOW) -> Any:
    principal = Principal("DB", account, "hash", None, None, "UTC", "US", "USD")
    return group.submit(principal, event=_event(), key=None, now=now)


async def test_a_lone_submission_is_decided_at_once_alone() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder)  # type: ignore[arg-type]
    outcome = await asyncio.wait_for(_submit(group), timeout=1)
    assert outcome.code == ACCEPTED
    assert recorder.calls == [1]


async def test_arrivals_during_a_decision_are_decided_together_next() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group = GroupCommit(recorder, max_group=4)  # type: ignore[arg-type]
    first = asyncio.ensure_future(_submit(group))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.calls == [1]
    rest = [asyncio.ensure_future(_submit(group)) for _ in range(10)]
    await asyncio.sleep(0)
    recorder.gate.set()
    outcomes = await asyncio.gather(first, *rest)
    assert [o.code for o in outcomes] == [ACCEPTED] * 11
    assert recorder.calls == [1, 4, 4, 2]  # capped at max_group, in arrival order


async def test_accounts_and_days_are_decided_apart() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder)  # type: ignore[arg-type]
    tomorrow = NOW.replace(day=3)
    await asyncio.gather(_submit(group, "A"), _submit(group, "B"), _submit(group, "A", tomorrow))
    assert sorted(recorder.calls) == [1, 1, 1]


async def test_a_failing_decision_answers_its_group_50503() -> None:
    group = GroupCommit(Recorder(fail=True))  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(_submit(group) for _ in range(3)))
    assert [o.code for o in outcomes] == [UNAVAILABLE] * 3


async def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group = GroupCommit(recorder)  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(_submit(group)) for _ in range(3)]
    await asyncio.sleep(0)
    waiting[1].cancel()
    recorder.gate.set()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [o.code for o in (done[0], done[2])] == [ACCEPTED, ACCEPTED]


async def test_a_decision_cancelled_at_shutdown_answers_every_waiter_50503() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group = GroupCommit(recorder)  # type: ignore[arg-type]
    first = asyncio.ensure_future(_submit(group))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = asyncio.ensure_future(_submit(group))
    await asyncio.sleep(0)
    for task in list(group._tasks):
        task.cancel()
    outcomes = await asyncio.gather(first, later)
    assert [o.code for o in outcomes] == [UNAVAILABLE, UNAVAILABLE]


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Recorder(), max_group=0)  # type: ignore[arg-type]

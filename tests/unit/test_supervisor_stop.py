"""Supervisor.stop at shutdown: loops that can drain are asked to and given the grace; what
is still running after it is cancelled, and said so."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from cdrmodel.supervisor import Supervisor


async def test_a_draining_task_finishes_its_work_and_the_rest_are_cancelled() -> None:
    supervisor = Supervisor("svc")
    stopping = asyncio.Event()
    finished: list[str] = []

    async def drains() -> None:
        await stopping.wait()
        await asyncio.sleep(0.05)  # the batch in hand, finished after the drain was asked
        finished.append("batch")

    async def forever() -> None:
        await asyncio.Event().wait()

    drained = supervisor.spawn("drains", drains(), drain=stopping.set)
    other = supervisor.spawn("forever", forever())
    await supervisor.stop(grace=5)
    assert finished == ["batch"] and not drained.cancelled()
    assert other.cancelled()


async def test_a_task_that_does_not_drain_in_the_grace_is_cancelled_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor("svc")
    asked: list[bool] = []

    async def stuck() -> None:
        await asyncio.Event().wait()

    task = supervisor.spawn("stuck", stuck(), drain=lambda: asked.append(True))
    began = time.monotonic()
    with caplog.at_level(logging.WARNING):
        await supervisor.stop(grace=0.2)
    assert asked == [True] and task.cancelled()
    assert 0.2 <= time.monotonic() - began < 2
    assert "['svc:stuck'] still busy after 0.2 s; cancelled" in caplog.text

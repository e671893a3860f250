"""No silent deaths: a background task that dies is logged with its traceback, /readyz turns
503, and a served process exits non-zero so that its orchestrator restarts it."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from cdrflow_dev.infra import free_port
from tests.conftest import Infra
from tests.dying_service import FAILURE, DyingSettings, create_app
from tests.helpers import wait_for


async def test_a_dead_task_is_logged_with_its_traceback_and_readyz_turns_503(
    infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    trigger = asyncio.Event()
    settings = DyingSettings(
        database_url=infra.database_url,
        kafka_bootstrap=infra.bootstrap,
        admin_token="test-admin-token",
    )
    app = create_app(settings, trigger=trigger)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            before = await client.get("/readyz")
            assert (before.status_code, before.json()["tasks"]) == (200, "ok")

            with caplog.at_level(logging.ERROR):
                trigger.set()

                async def not_ready() -> bool:
                    return (await client.get("/readyz")).status_code == 503

                await wait_for(not_ready, timeout=10, what="/readyz to turn 503")
            assert (await client.get("/readyz")).json()["tasks"] == "down"
            assert (await client.get("/healthz")).status_code == 200  # alive, not ready
    death = [r for r in caplog.records if "doomed" in r.getMessage()]
    assert death and death[0].exc_info is not None
    assert "Traceback" in caplog.text and f"RuntimeError: {FAILURE}" in caplog.text


@pytest.mark.slow
def test_a_served_process_whose_task_dies_exits_non_zero(infra: Infra, tmp_path: Path) -> None:
    log_path = tmp_path / "dying.log"
    env = {
        **infra.env(),
        "CDR_PORT": str(free_port()),
        "CDR_DOOM_AFTER": "1.5",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # the repository root
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.dying_service"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log_path.read_text()
    assert code == 1, out
    assert "Traceback" in out and f"RuntimeError: {FAILURE}" in out
    assert "Application shutdown complete" in out  # uvicorn stopped in order, lifespan closed

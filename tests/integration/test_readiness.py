"""/readyz tells the truth: 503 while PostgreSQL is unreachable, while /healthz stays 200."""

from __future__ import annotations

import httpx
import pytest

from cdrmodel.devstack import ServiceProcess
from cdrmodel.infra import free_port
from tests.conftest import Infra
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


async def test_readyz_is_503_while_postgres_is_unreachable(infra: Infra) -> None:
    dead_db = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    proc = ServiceProcess(
        "ingest",
        free_port(),
        infra.env(CDR_DATABASE_URL=dead_db),
        log_path=infra.logs / "ingest-deaddb.log",
    )
    proc.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def up() -> bool:
                try:
                    return (await client.get(f"{proc.url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=60, what="ingest to listen")
            ready = await client.get(f"{proc.url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "down" and ready.json()["kafka"] == "ok"
            # A submission cannot be accepted: 50503, nothing stored, never a 500.
            answer = await client.get(
                f"{proc.url}/api_submitcdr.aspx",
                params={
                    "DatabaseID": "DEMO",
                    "APIAccountID": "DEMO",
                    "APIPassword": "x",
                    "OriginatingNumber": "100",
                    "DestinationNumber": "1613",
                    "Duration": "1",
                },
            )
            assert (answer.status_code, answer.text) == (200, "50503")
    finally:
        proc.stop()

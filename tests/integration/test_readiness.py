"""/readyz tells the truth: 503 while PostgreSQL is unreachable, while /healthz stays 200."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from cdrflow_dev.infra import free_port
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra
from tests.helpers import Tenant, wait_listening

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
        await wait_listening(proc.url)
        async with httpx.AsyncClient(timeout=10) as client:
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


@pytest.mark.parametrize("service", ["ingest", "rater", "notifier"])
async def test_services_start_without_kafka_and_report_not_ready(
    infra: Infra, service: str
) -> None:
    dead_kafka = f"127.0.0.1:{free_port()}"
    proc = ServiceProcess(
        service,
        free_port(),
        infra.env(CDR_KAFKA_BOOTSTRAP=dead_kafka),
        log_path=infra.logs / f"{service}-deadkafka.log",
    )
    proc.start()
    try:
        await wait_listening(proc.url)
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"{proc.url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["kafka"] == "down" and ready.json()["database"] == "ok"
            # Waiting for Kafka is not dying: the supervised connect loops keep retrying.
            assert ready.json()["tasks"] == "ok"
            if service == "ingest":
                answer = await client.get(
                    f"{proc.url}/api_submitcdr.aspx",
                    params={"DatabaseID": "NOPE", "Duration": "1"},
                )
                assert answer.text == "50443"  # auth still answers; nothing reaches Kafka
    finally:
        proc.stop()


async def test_submission_without_kafka_answers_50503_and_stores_nothing(
    infra: Infra, tenant: Tenant
) -> None:
    proc = ServiceProcess(
        "ingest",
        free_port(),
        infra.env(CDR_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}"),
        log_path=infra.logs / "ingest-nokafka.log",
    )
    proc.start()
    try:
        await wait_listening(proc.url)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                f"{proc.url}/api_submitcdr.aspx",
                params=tenant.submit_params(ExternalID="nokafka1"),
            )
        assert answer.text == "50503"
        conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM cdr WHERE database_id = $1", tenant.database_id
            )
        finally:
            await conn.close()
        assert stored == 0
    finally:
        proc.stop()

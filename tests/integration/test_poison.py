"""A record no stage can store never blocks its partition: it goes to the dead-letter topic,
kept as it came, and the records around it are stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cdrmodel.db import asyncpg_dsn
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.kafka import DEAD_LETTER, SUBMITTED
from tests.conftest import Infra, Stack
from tests.helpers import Tenant, wait_for

pytestmark = pytest.mark.slow


def _event(tenant: Tenant, **fields: object) -> CdrSubmitted:
    base: dict[str, object] = {
        "cdr_id": new_cdr_id(),
        "database_id": tenant.database_id,
        "api_account": tenant.account,
        "received_at": datetime.now(UTC),
        "originating_number": "100",
        "destination_number": "16138220000",
        "start_time": datetime.now(UTC),
        "duration": 60,
    }
    base.update(fields)
    return CdrSubmitted.model_validate(base)


async def test_unstorable_records_are_dead_lettered_and_the_rest_stored(
    infra: Infra, stack: Stack, tenant: Tenant
) -> None:
    good = [_event(tenant, external_id=f"g{i}") for i in range(5)]
    nul = _event(tenant, external_id="bad\x00id")  # PostgreSQL text cannot hold NUL
    orphan = _event(tenant, database_id="NO_SUCH_TENANT_" + uuid.uuid4().hex[:6])
    batch = [good[0], good[1], nul, good[2], orphan, good[3], good[4]]
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    try:
        for event in batch:  # one key: one partition, so the bad ones sit between good ones
            await producer.send(
                SUBMITTED, event.model_dump_json().encode(), key=tenant.database_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()

    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:

        async def stored() -> set[str]:
            rows = await conn.fetch(
                "SELECT external_id FROM cdr WHERE database_id = $1", tenant.database_id
            )
            found = {r["external_id"] for r in rows}
            return found if len(found) == len(good) else set()

        assert await wait_for(stored, timeout=60, what="the good records") == {
            f"g{i}" for i in range(5)
        }
    finally:
        await conn.close()

    dead = AIOKafkaConsumer(
        DEAD_LETTER,
        bootstrap_servers=infra.bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await dead.start()
    wanted = {str(nul.cdr_id): "unstorable", str(orphan.cdr_id): "unknown_tenant"}
    seen: dict[str, str] = {}
    try:

        async def collected() -> bool:
            batches = await dead.getmany(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    event = CdrSubmitted.model_validate_json(rec.value)
                    seen[str(event.cdr_id)] = dict(rec.headers)["reason"].decode()
            return all(k in seen for k in wanted)

        await wait_for(collected, timeout=60, what="both records on the dead-letter topic")
    finally:
        await dead.stop()
    assert {k: seen[k] for k in wanted} == wanted

"""Fixtures of the tests that drive a consumer's handler directly on the real infrastructure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from cdrmodel.db import asyncpg_dsn, make_engine
from cdrmodel.kafka import make_producer
from tests.conftest import Infra


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(infra.database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    """A producer as the services make it (a module creates its topics with an autouse fixture)."""
    producer = make_producer(infra.bootstrap)
    await producer.start()
    yield producer
    await producer.stop()

"""Which PostgreSQL errors a record causes (kept aside as poison) and which are passing trouble
(retried), classified from real server errors by SQLSTATE: a deadlock or a statement timeout
must never get a good record rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cdrmodel.db import is_transient, make_engine, record_fault, sqlstate
from tests.conftest import Infra


@pytest.fixture(scope="module")
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(infra.database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def _error(
    engine: AsyncEngine, statement: str, params: dict[str, object] | None = None
) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        async with engine.connect() as conn:
            await conn.execute(text(statement), params or {})
    return caught.value


def _raise(code: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{code}'; END $$"


@pytest.mark.parametrize(
    ("statement", "params", "code"),
    [
        ("SELECT CAST(:v AS text)", {"v": "a\x00b"}, "22021"),  # a NUL byte in text
        ("SELECT 1/0", None, "22012"),
        ("SELECT 'x'::int", None, "22P02"),
        ("SELECT 99999999999::int", None, "22003"),
        (_raise("23505"), None, "23505"),
        (_raise("23514"), None, "23514"),
    ],
)
async def test_errors_a_record_causes_are_its_fault(
    engine: AsyncEngine, statement: str, params: dict[str, object] | None, code: str
) -> None:
    exc = await _error(engine, statement, params)
    assert sqlstate(exc) == code
    assert record_fault(exc) and not is_transient(exc)


@pytest.mark.parametrize(
    "code",
    ["40P01", "40001", "57014", "55P03", "53300", "57P03", "08006"],
)
async def test_passing_server_trouble_is_transient_never_the_record(
    engine: AsyncEngine, code: str
) -> None:
    exc = await _error(engine, _raise(code))
    assert sqlstate(exc) == code
    assert is_transient(exc) and not record_fault(exc)


async def test_a_schema_mismatch_is_neither_retried_as_transient_nor_blamed_on_the_record(
    engine: AsyncEngine,
) -> None:
    # A rater deployed before its migration: an operator must fix it; no record is at fault.
    exc = await _error(engine, "SELECT no_such_column FROM tenant")
    assert sqlstate(exc) == "42703"
    assert not record_fault(exc) and not is_transient(exc)


def test_python_errors_are_never_blamed_on_the_record() -> None:
    # A bug is fixed by a deploy, after which the same records store fine: retry, never reject.
    assert not record_fault(KeyError("bug")) and not record_fault(ValueError("bug"))
    assert not record_fault(ConnectionResetError())
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())

"""Group commit of the compat endpoint, in process against the real PostgreSQL and Tansu:
concurrent submissions of one account share admit statements and keep every answer exact."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cdr_ingest.dedupe import Submitter
from tests.helpers import Tenant, create_tenant
from tests.inprocess.conftest import Pipeline, PipelineFactory

SUBMIT = "/api_submitcdr.aspx"


@contextmanager
def admit_statements(tenant: Tenant) -> Iterator[list[str]]:
    """The admit statements (key inserts) any engine runs for `tenant` inside the block."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if "INSERT INTO ingest_key" in statement and tenant.database_id in str(params):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def _codes(pipeline: Pipeline, params: list[dict[str, str]]) -> Counter[str]:
    answers = await asyncio.gather(*(pipeline.ingest.get(SUBMIT, params=p) for p in params))
    assert all(r.status_code == 200 for r in answers)
    return Counter(r.text for r in answers)


async def _stored_count(pipeline: Pipeline, tenant: Tenant) -> int:
    rows = await pipeline.sql(
        "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
    )
    return int(rows[0]["n"])


async def test_concurrent_distinct_submissions_share_admit_statements(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    params = [tenant.submit_params(ExternalID=f"gc{i}") for i in range(200)]
    with admit_statements(tenant) as statements:
        codes = await _codes(pipeline, params)
    assert codes == {"0": 200}
    # One statement per group, not per request: the 200 arrive together and are gathered.
    assert 1 <= len(statements) <= 20
    await pipeline.wait_stored(tenant, 200, limit=1000)
    assert await _stored_count(pipeline, tenant) == 200


async def test_100_concurrent_identical_submissions_in_groups_answer_one_0(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    params = [tenant.submit_params(ExternalID="gcsame")] * 100
    with admit_statements(tenant) as statements:
        codes = await _codes(pipeline, params)
    assert codes == {"0": 1, "50421": 99}
    assert len(statements) < 100
    await pipeline.wait_stored(tenant, 1)
    assert await _stored_count(pipeline, tenant) == 1


async def test_concurrent_submissions_over_the_limit_accept_exactly_the_limit(
    pipeline: Pipeline,
) -> None:
    tenant = await create_tenant(pipeline.rater, daily_limit=30)
    keyed = [tenant.submit_params(ExternalID=f"lim{i}") for i in range(40)]
    keyless = [tenant.submit_params() for _ in range(40)]
    codes = await _codes(pipeline, [p for pair in zip(keyed, keyless, strict=True) for p in pair])
    assert codes == {"0": 30, "50429": 50}
    await pipeline.wait_stored(tenant, 30)
    assert await _stored_count(pipeline, tenant) == 30
    # Refused keys were not kept: tomorrow's retries are new records, not duplicates.
    keys = await pipeline.sql(
        "SELECT count(*) AS n FROM ingest_key WHERE database_id = $1", tenant.database_id
    )
    assert keys[0]["n"] <= 30


async def test_a_failing_group_answers_50503_and_the_next_group_is_served(
    pipeline: Pipeline, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Submitter.submit
    failures = iter([True])

    async def once_broken(self: Submitter, **kwargs: Any) -> Any:
        if next(failures, False):
            raise RuntimeError("a bug in one decision")
        return await real(self, **kwargs)

    monkeypatch.setattr(Submitter, "submit", once_broken)
    assert await pipeline.submit(tenant, ExternalID="gcfail") == "50503"
    # Nothing was stored or remembered: the retries are accepted once.
    again = await _codes(pipeline, [tenant.submit_params(ExternalID="gcfail")] * 5)
    assert again == {"0": 1, "50421": 4}
    await pipeline.wait_stored(tenant, 1)
    assert await _stored_count(pipeline, tenant) == 1


async def test_after_postgres_drops_its_connections_ingest_answers_50503_then_recovers(
    pipeline_factory: PipelineFactory,
) -> None:
    # Ingest's pool does not ping connections before use: a connection the server killed
    # fails one statement, answered 50503 (nothing stored), and the pool reconnects.
    async with pipeline_factory() as own:
        tenant = await own.tenant()
        assert await own.submit(tenant, ExternalID="pg1") == "0"
        db = own.database_url.rsplit("/", 1)[1]
        await own.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            db,
        )
        answers = [await own.submit(tenant, ExternalID=f"pg{i}") for i in range(2, 8)]
        assert set(answers) <= {"0", "50503"}
        assert answers[-3:] == ["0", "0", "0"]
        accepted = 1 + answers.count("0")
        await own.wait_stored(tenant, accepted)
        rows = await own.sql(
            "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
        )
        assert rows[0]["n"] == accepted


async def test_a_submission_that_fits_the_limit_costs_one_admit_statement(
    pipeline: Pipeline,
) -> None:
    tenant = await create_tenant(pipeline.rater, daily_limit=2)
    assert await pipeline.submit(tenant, ExternalID="fit1") == "0"
    with admit_statements(tenant) as fits:
        assert await pipeline.submit(tenant, ExternalID="fit2") == "0"
    assert len(fits) == 1  # one statement, no transaction around it
    with admit_statements(tenant) as over:
        assert await pipeline.submit(tenant, ExternalID="fit3") == "50429"
    # It did not fit: that statement undid itself and the transaction granted nothing.
    assert len(over) == 2
    keys = await pipeline.sql(
        "SELECT count(*) AS n FROM ingest_key WHERE database_id = $1", tenant.database_id
    )
    assert keys[0]["n"] == 2

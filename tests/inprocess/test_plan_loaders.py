"""The per-batch loaders (the deck lines a batch's numbers can match, used to quote) and the
whole-tenant plan the cache holds price every call alike."""

from __future__ import annotations

from datetime import UTC, datetime

from cdr_rater import repository
from cdr_rater.handler import match_numbers
from cdr_rater.pricing import Call, TenantPlan, rate_call
from cdrmodel.db import make_engine
from cdrmodel.events import CdrSubmitted, new_cdr_id
from tests.helpers import ADMIN_TOKEN, Tenant
from tests.inprocess.conftest import Pipeline

CALLS = [("100", "16138220000"), ("100", "14185550100"), ("555", "16135550000"), ("100", "200")]


async def test_batch_loaders_price_like_the_whole_tenant_plan(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    await pipeline.rater.put(
        f"/v1/admin/tenants/{tenant.database_id}/extensions/200",
        json={"package": tenant.package},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    at = datetime(2026, 3, 1, 8, tzinfo=UTC)
    events = [
        CdrSubmitted(
            cdr_id=new_cdr_id(),
            database_id=tenant.database_id,
            api_account=tenant.account,
            received_at=at,
            originating_number=origin,
            destination_number=target,
            start_time=at,
            duration=90,
        )
        for origin, target in CALLS
    ]
    engine = make_engine(pipeline.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            db = tenant.database_id
            row = await repository.load_tenant(conn, database_id=db)
            assert row is not None and row["country"] == "US"
            assert await repository.load_tenant(conn, database_id="NOSUCHDB") is None
            whole = await repository.load_tenant_config(conn, database_id=db)
            assert whole is not None
            _, full_plan, full_defaults = whole
            plan = TenantPlan(home_country=row["country"], timezone=row["timezone"])
            plan.extensions = await repository.load_extensions(
                conn, database_id=db, numbers=[n for pair in CALLS for n in pair]
            )
            assert set(plan.extensions) == {"100", "200"}
            assert await repository.load_extensions(conn, database_id=db, numbers=[]) == {}
            defaults = await repository.load_default_packages(
                conn, database_id=db, accounts=[tenant.account]
            )
            assert defaults == full_defaults == {tenant.account: None}
            wanted = repository.all_prefixes(match_numbers(events, plan))
            plan.packages, plan.routes = await repository.load_decks(
                conn, database_id=db, prefixes=wanted
            )
            empty, _ = await repository.load_decks(conn, database_id=db, prefixes=[])
            assert set(empty) == {tenant.package}
    finally:
        await engine.dispose()
    for ev in events:
        call = Call(ev.originating_number, ev.destination_number, ev.start_time, ev.duration)
        batch = rate_call(call, plan, default_package=None)
        full = rate_call(call, full_plan, default_package=None)
        assert (batch.rated, batch.unrated_reason, batch.total, batch.cost) == (
            full.rated,
            full.unrated_reason,
            full.total,
            full.cost,
        ), call
    priced = [rate_call(Call(o, t, at, 90), plan, default_package=None) for o, t in CALLS]
    assert [p.unrated_reason for p in priced] == [None, None, "no_package", None]
    assert [str(p.total) for p in priced] == ["0.03000000", "0.03000000", "None", "0"]

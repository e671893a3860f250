"""The feed statement renders records from their columns, never the pricing explanation."""

from __future__ import annotations

from cdr_notifier.feed_repository import feed_sql


def test_feed_page_does_not_read_the_pricing_explanation() -> None:
    sql, params = feed_sql(database_id="DB", from_id=7, limit=10, currency="USD")
    assert "pricing" not in sql
    assert params == ["DB", 7, 10]


def test_the_statement_is_built_once_per_currency() -> None:
    first, _ = feed_sql(database_id="A", from_id=0, limit=1, currency="EUR")
    again, _ = feed_sql(database_id="B", from_id=5, limit=9, currency="EUR")
    assert first is again  # asyncpg's statement cache then prepares it once

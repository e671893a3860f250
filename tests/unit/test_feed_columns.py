"""The feed statement reads what a record is rendered from, never the pricing explanation."""

from __future__ import annotations

from typing import Any

from cdr_notifier.feed_repository import feed_page
from cdr_notifier.search_repository import RECORD_SOURCE_COLUMNS
from cdrmodel.record import render_record


class _Capture:
    """Stands in for the connection: keeps the statement instead of running it."""

    statement: Any = None

    async def execute(self, statement: Any) -> Any:
        self.statement = statement
        return self

    def mappings(self) -> list[Any]:
        return []


async def _feed_columns() -> list[str]:
    capture = _Capture()
    await feed_page(capture, database_id="DB", from_id=0, limit=10)  # type: ignore[arg-type]
    return [c.name for c in capture.statement.selected_columns]


async def test_feed_page_does_not_read_the_pricing_explanation() -> None:
    columns = await _feed_columns()
    assert "pricing" not in columns
    assert columns == list(RECORD_SOURCE_COLUMNS)


async def test_feed_columns_are_enough_to_render_a_record_with_its_feed_id() -> None:
    columns = await _feed_columns()
    assert {"feed_id", "revision"} <= set(columns)
    row = {name: None for name in columns} | {
        "cdr_id": "0193c4d2-0000-7000-8000-000000000000",
        "database_id": "DB",
        "api_account": "ACC",
        "originating_number": "100",
        "destination_number": "16135550000",
        "duration": 30,
        "disposition": "ANSWERED",
        "feed_id": 1,
        "revision": 1,
    }
    assert render_record(row)["revision"] == 1

"""Naive times are read in the tenant's zone; implausible years are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdrmodel.errors import Unprocessable
from cdrmodel.timeutil import aware, in_zone


def test_a_naive_time_takes_the_tenant_zone() -> None:
    got = aware(datetime(2026, 7, 1, 12, 0), "America/New_York")
    assert got is not None and got.astimezone(UTC) == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


def test_an_unknown_zone_falls_back_to_utc() -> None:
    assert aware(datetime(2026, 7, 1, 12, 0), "Not/AZone") == datetime(2026, 7, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("year", [1969, 2101])
def test_implausible_years_are_none_and_a_422_in_queries(year: int) -> None:
    value = datetime(year, 6, 1, tzinfo=UTC)
    assert aware(value, "UTC") is None
    with pytest.raises(Unprocessable, match="outside 1970-2100"):
        in_zone(value, "UTC")


def test_a_time_at_the_edge_of_the_calendar_is_none_not_an_overflow() -> None:
    assert aware(datetime(1, 1, 1, 0, 0), "Asia/Tokyo") is None

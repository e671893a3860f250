"""Times given without an offset are in the tenant's time zone (contract §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cdrmodel.errors import Unprocessable

MIN_YEAR, MAX_YEAR = 1970, 2100


def aware(value: datetime, timezone: str) -> datetime | None:
    """`value` made aware (naive = the tenant's zone); None unless a plausible call time."""
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=ZoneInfo(timezone))
        except (KeyError, ValueError):
            value = value.replace(tzinfo=UTC)
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    return value if MIN_YEAR <= year <= MAX_YEAR else None


def in_zone(value: datetime, timezone: str) -> datetime:
    """As `aware`, for query parameters: an implausible time is a 422."""
    checked = aware(value, timezone)
    if checked is None:
        raise Unprocessable(f"time {value.isoformat()} is outside {MIN_YEAR}-{MAX_YEAR}")
    return checked

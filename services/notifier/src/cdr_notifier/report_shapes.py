"""The reports' pure parts: the date range a request names, countries of numbers, ratios, the
unrated listing's cursor. No SQL and no web framework here (the SQL is `reports_repository`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from babel import Locale

from cdrmodel.errors import Unprocessable
from cdrmodel.timeutil import MAX_YEAR, MIN_YEAR, aware

DEFAULT_DAYS = 30  # a range without `from` covers the 30 days before `to`
MAX_DAYS = 366  # a longer range is refused: split it (a year fits, with its leap day)
RATIO_PLACES = Decimal("0.0001")  # answered / total: 4 places, half-up

# Regions phonenumbers gives numbers that belong to no country (+800, +881, +882 ...).
_NON_GEOGRAPHIC = phonenumbers.UNKNOWN_REGION, "001"


def zone_of(name: str) -> tuple[str, tzinfo]:
    """The tenant's zone name and zone; a name zoneinfo cannot read (which the admin API
    refuses, so only old rows can hold one) is UTC, as `cdrmodel.timeutil.aware` reads it."""
    try:
        return name, ZoneInfo(name)
    except (KeyError, ValueError):
        return "UTC", UTC


@dataclass(frozen=True, slots=True)
class ReportRange:
    """`[start, end)` as instants, and the zone the report buckets and shows times in."""

    start: datetime
    end: datetime
    timezone: str
    zone: tzinfo

    def local(self, value: datetime) -> str:
        return value.astimezone(self.zone).isoformat()


def parse_bound(name: str, raw: str | None) -> date | datetime | None:
    """A `from` / `to` parameter: `YYYY-MM-DD` (a whole local day) or an ISO 8601 date-time
    (without an offset: the tenant's local time)."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        if len(text) == 10 and "T" not in text:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise Unprocessable(
            f"{name}: {raw!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 date-time"
        ) from None


def _midnight(name: str, day: date, zone: tzinfo) -> datetime:
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise Unprocessable(f"{name}: {day.isoformat()} is outside {MIN_YEAR}-{MAX_YEAR}")
    # A midnight a DST change skips takes the offset before the change, as every local
    # time without an offset does (docs/rating.md).
    return datetime.combine(day, time(), tzinfo=zone)


def _instant(name: str, value: datetime, zone_name: str) -> datetime:
    checked = aware(value, zone_name)
    if checked is None:
        raise Unprocessable(f"{name}: {value.isoformat()} is outside {MIN_YEAR}-{MAX_YEAR}")
    return checked


def report_range(
    from_raw: str | None, to_raw: str | None, *, timezone: str, now: datetime
) -> ReportRange:
    """The range of a report request (docs/queries.md, Reports).

    A date `from` starts at that day's local midnight; a date `to` includes its whole day
    (the range ends at the next local midnight); a date-time `to` is excluded. Without `to`
    the range ends at the end of today (local); without `from` it starts `DEFAULT_DAYS`
    before `to`, local clock time. At most `MAX_DAYS` long; `to` after `from`.
    """
    zone_name, zone = zone_of(timezone)
    first, last = parse_bound("from", from_raw), parse_bound("to", to_raw)
    if last is None:
        end = _midnight("to", now.astimezone(zone).date() + timedelta(days=1), zone)
    elif isinstance(last, datetime):
        end = _instant("to", last, zone_name)
    else:
        _midnight("to", last, zone)  # the year check, on the day the client named
        end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    if first is None:
        wall = end.astimezone(zone).replace(tzinfo=None) - timedelta(days=DEFAULT_DAYS)
        start = wall.replace(tzinfo=zone)
    elif isinstance(first, datetime):
        start = _instant("from", first, zone_name)
    else:
        start = _midnight("from", first, zone)
    # Instants in UTC: arithmetic between two times of one ZoneInfo is on the wall clock.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise Unprocessable(
            f"to: {end.astimezone(zone).isoformat()} is not after from "
            f"({start.astimezone(zone).isoformat()})"
        )
    if end - start > timedelta(days=MAX_DAYS):
        raise Unprocessable(
            f"to: the range from {start.astimezone(zone).isoformat()} to "
            f"{end.astimezone(zone).isoformat()} is longer than {MAX_DAYS} days; split it"
        )
    return ReportRange(start=start, end=end, timezone=zone_name, zone=zone)


@lru_cache(maxsize=65536)
def country_of(e164_digits: str | None) -> str | None:
    """The ISO 3166 alpha-2 country of a normalised number (E.164 digits), as phonenumbers
    decides it; None for numbers it cannot place or that belong to no country.

    Regions that share a calling code (US and CA under +1, GB and JE under +44) are told
    apart by the whole number's patterns, which is why this is not a prefix table in SQL.
    """
    if not e164_digits:
        return None
    try:
        parsed = phonenumbers.parse("+" + e164_digits, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return None if region is None or region in _NON_GEOGRAPHIC else str(region)


@lru_cache(maxsize=512)
def country_name(code: str | None) -> str | None:
    """The English name of a country code (CLDR, as babel ships it)."""
    if code is None:
        return None
    name = Locale("en").territories.get(code)
    return str(name) if name else None


def ratio(answered: int, total: int) -> str | None:
    """answered / total as a decimal string of 4 places, rounded half-up; None for no calls."""
    if total == 0:
        return None
    return format((Decimal(answered) / Decimal(total)).quantize(RATIO_PLACES, ROUND_HALF_UP), "f")


def encode_cursor(at: datetime, cdr_id: uuid.UUID) -> str:
    """The unrated listing's position: the last record's time and id, opaque to clients."""
    raw = f"{at.astimezone(UTC).isoformat()}|{cdr_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        at_text, id_text = raw.split("|")
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("no offset")
        return at, uuid.UUID(id_text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise Unprocessable(
            f"cursor: {token[:40]!r} is not a next_cursor this report answered"
        ) from None

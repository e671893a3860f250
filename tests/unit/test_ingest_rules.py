"""Seed-000 submission rules without I/O: start times, durations, field limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdr_ingest.service import Rejected, build_compat_event, parse_duration, parse_start_time
from cdrmodel.principals import Principal

TORONTO = Principal(
    database_id="DB",
    api_account_id="ACC",
    password_hash="",
    daily_limit=None,
    default_package=None,
    timezone="America/Toronto",
    country="CA",
    currency="CAD",
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2008-Jan-01 12:12:59", "2008-01-01T12:12:59-05:00"),  # seed's preferred format
        ("2008-jan-01 12:12:59", "2008-01-01T12:12:59-05:00"),
        ("2008-07-01 12:12:59", "2008-07-01T12:12:59-04:00"),  # daylight time
        ("2008-07-01T12:12:59", "2008-07-01T12:12:59-04:00"),
        ("2026-03-01T10:00:00+02:00", "2026-03-01T10:00:00+02:00"),
        ("2026-03-01T10:00:00Z", "2026-03-01T10:00:00+00:00"),
    ],
)
def test_start_times_without_offset_are_in_the_tenant_zone(raw: str, expected: str) -> None:
    parsed = parse_start_time(raw, "America/Toronto")
    assert parsed is not None and parsed.isoformat() == expected


@pytest.mark.parametrize(
    "raw", ["not a date", "2008-13-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01T00:00:00+14:00"]
)
def test_unreadable_or_implausible_start_times_are_none(raw: str) -> None:
    assert parse_start_time(raw, "UTC") is None


@pytest.mark.parametrize("raw", ["", None, "1.5", "-1", "86401", "²", "٣", "9" * 5000, " "])
def test_bad_durations_answer_50416(raw: str | None) -> None:
    with pytest.raises(Rejected) as exc:
        parse_duration(raw)
    assert exc.value.code == 50416


def test_missing_start_time_is_arrival_minus_duration() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    event = build_compat_event(
        {"originatingnumber": "100", "destinationnumber": "16138220000", "duration": "90"},
        TORONTO,
        now=now,
    )
    assert event.start_time == datetime(2026, 11, 23, 11, 58, 30, tzinfo=UTC)
    assert event.disposition == "ANSWERED"


def test_unreadable_start_time_is_kept_raw_for_correction() -> None:
    event = build_compat_event(
        {
            "originatingnumber": "100",
            "destinationnumber": "1613",
            "duration": "0",
            "startdatetime": "yesterday-ish",
        },
        TORONTO,
        now=datetime.now(UTC),
    )
    assert event.start_time is None and event.start_time_raw == "yesterday-ish"
    assert event.disposition == "NO ANSWER"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("originatingnumber", "10\x000", 50411),
        ("destinationnumber", "1613\n", 50412),
        ("accountcode", "a\x00", 50413),
        ("externalid", "e\x01", 50414),
    ],
)
def test_control_characters_answer_the_field_code(field: str, value: str, code: int) -> None:
    params = {"originatingnumber": "100", "destinationnumber": "1613", "duration": "1"}
    params[field] = value
    with pytest.raises(Rejected) as exc:
        build_compat_event(params, TORONTO, now=datetime.now(UTC))
    assert exc.value.code == code

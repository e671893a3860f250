"""Time-of-day bands: parsing, edges, precedence against band-less lines, DST in the tenant's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from cdr_rater import bands
from cdr_rater.admin.decks import BadDeck, parse_deck, parse_line
from cdr_rater.pricing import Call, Package, RateDeck, RateLine, TenantPlan, rate_call, zone_of

D = Decimal
NYC = "12125550123"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "canonical", "minutes"),
    [
        ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00", 5 * 600),
        ("  MON-FRI   08:00-18:00 ", "mon-fri 08:00-18:00", 5 * 600),
        ("sat-sun", "sat-sun", 2 * 1440),
        ("sat,sun", "sat,sun", 2 * 1440),
        ("fri-mon", "fri-mon", 4 * 1440),  # wraps past Sunday
        ("wed", "wed", 1440),
        ("08:00-18:00", "08:00-18:00", 7 * 600),  # every day
        ("mon-fri 18:00-24:00", "mon-fri 18:00-24:00", 5 * 360),
        ("22:00-06:00", "22:00-06:00", 7 * 480),  # crosses midnight
        ("mon,wed,fri 9:00-17:00", "mon,wed,fri 9:00-17:00", 3 * 480),
    ],
)
def test_band_forms(text: str, canonical: str, minutes: int) -> None:
    band = bands.parse(text)
    assert band is not None and (band.text, band.minutes) == (canonical, minutes)


@pytest.mark.parametrize("text", [None, "", "  ", "default", "DEFAULT"])
def test_no_band(text: str | None) -> None:
    assert bands.parse(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("weekdays", "unknown day 'weekdays'"),
        ("mon-fri 8-18", "is not HH:MM-HH:MM"),
        ("mon 18:00-18:00", "is empty"),
        ("mon 08:00-25:00", "not between 00:00 and 24:00"),
        ("mon 08:60-09:00", "not between 00:00 and 24:00"),
        ("mon 24:30-01:00", "not between 00:00 and 24:00"),
        ("mon 0800-1800", "is not HH:MM"),
        ("mon-fri 08:00-18:00 sat", "expected DAYS, HH:MM-HH:MM or both"),
        ("mon-fri sat", "is not HH:MM-HH:MM"),
        ("mon-", "unknown day ''"),
    ],
)
def test_bad_bands_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"time_band {text!r}: .*{reason}"):
        bands.parse(text)


PEAK = bands.parse("mon-fri 08:00-18:00")
NIGHT = bands.parse("22:00-06:00")


@pytest.mark.parametrize(
    ("band", "local", "inside"),
    [
        (PEAK, datetime(2026, 1, 12, 7, 59, 59), False),  # Monday
        (PEAK, datetime(2026, 1, 12, 8, 0, 0), True),  # the first second is inside
        (PEAK, datetime(2026, 1, 12, 17, 59, 59), True),
        (PEAK, datetime(2026, 1, 12, 18, 0, 0), False),  # the end is outside
        (PEAK, datetime(2026, 1, 16, 12, 0), True),  # Friday
        (PEAK, datetime(2026, 1, 17, 12, 0), False),  # Saturday
        (NIGHT, datetime(2026, 1, 12, 21, 59, 59), False),
        (NIGHT, datetime(2026, 1, 12, 22, 0), True),
        (NIGHT, datetime(2026, 1, 12, 23, 59, 59), True),
        (NIGHT, datetime(2026, 1, 13, 0, 0), True),
        (NIGHT, datetime(2026, 1, 13, 5, 59, 59), True),
        (NIGHT, datetime(2026, 1, 13, 6, 0), False),
        (bands.parse("sat-sun"), datetime(2026, 1, 18, 23, 59, 59), True),  # Sunday night
        (bands.parse("sat-sun"), datetime(2026, 1, 19, 0, 0), False),  # Monday
        (bands.parse("fri-mon"), datetime(2026, 1, 19, 12, 0), True),
        (bands.parse("fri-mon"), datetime(2026, 1, 20, 12, 0), False),
    ],
)
def test_band_edges(band: bands.Band | None, local: datetime, inside: bool) -> None:
    assert band is not None and band.contains(local) is inside


BANDED = [
    RateLine("1212", D("0.05"), destination="NYC peak", time_band=PEAK),
    RateLine("1212", D("0.02"), destination="NYC any time"),
    RateLine("1", D("0.01"), destination="NANP"),
]


def price(lines: list[RateLine], at: datetime, zone: str = "America/New_York") -> RateLine | None:
    p = TenantPlan(home_country="US", timezone=zone, packages={"p": Package(None, RateDeck(lines))})
    rating = rate_call(Call("200", NYC, at, 60), p, default_package="p")
    return rating.line


@pytest.mark.parametrize(
    ("at", "name"),
    [
        # 13:30Z on a January Thursday is 08:30 in New York (EST, -5): peak
        (datetime(2026, 1, 15, 13, 30, tzinfo=UTC), "NYC peak"),
        # 12:30Z is 07:30 there: the band-less line of the same prefix
        (datetime(2026, 1, 15, 12, 30, tzinfo=UTC), "NYC any time"),
        # 22:59:59Z is 17:59:59 (inside), 23:00:00Z is 18:00 (outside)
        (datetime(2026, 1, 15, 22, 59, 59, tzinfo=UTC), "NYC peak"),
        (datetime(2026, 1, 15, 23, 0, 0, tzinfo=UTC), "NYC any time"),
        # Saturday 01:00Z is still Friday 20:00 in New York: not peak
        (datetime(2026, 1, 17, 1, 0, tzinfo=UTC), "NYC any time"),
        # Monday 04:00Z is Sunday 23:00 in New York
        (datetime(2026, 1, 19, 4, 0, tzinfo=UTC), "NYC any time"),
    ],
)
def test_band_is_read_in_the_tenants_zone(at: datetime, name: str) -> None:
    line = price(BANDED, at)
    assert line is not None and line.destination == name


def test_a_banded_line_outside_its_band_lets_a_shorter_prefix_match() -> None:
    lines = [BANDED[0], BANDED[2]]
    saturday = datetime(2026, 1, 17, 15, 0, tzinfo=UTC)
    assert price(lines, saturday) == BANDED[2]


def test_the_narrower_band_wins_then_the_latest_effective_from() -> None:
    lunch = RateLine(
        "1212", D("0.03"), destination="lunch", time_band=bands.parse("mon-fri 12:00-13:00")
    )
    peak_2025 = RateLine(
        "1212",
        D("0.06"),
        destination="peak 2025",
        time_band=PEAK,
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    lines = [BANDED[1], peak_2025, BANDED[0], lunch]
    at_lunch = datetime(2026, 1, 15, 17, 30, tzinfo=UTC)  # 12:30 in New York
    at_peak = datetime(2026, 1, 15, 19, 30, tzinfo=UTC)  # 14:30
    assert [price(lines, t).destination for t in (at_lunch, at_peak)] == [  # type: ignore[union-attr]
        "lunch",
        "peak 2025",
    ]


def test_without_a_zone_bands_are_read_in_utc() -> None:
    line = RateDeck(BANDED).match(NYC, datetime(2026, 1, 15, 8, 0, tzinfo=UTC))
    assert line is not None and line.destination == "NYC peak"


# --- DST ------------------------------------------------------------------------------------
# New York 2026: spring forward Sunday 8 March 02:00 EST -> 03:00 EDT (07:00Z);
# fall back Sunday 1 November 02:00 EDT -> 01:00 EST (06:00Z), so 01:30 happens twice.

NIGHT_SUN = RateLine(
    "1212", D("0.001"), destination="sun 01:00-02:00", time_band=bands.parse("sun 01:00-02:00")
)
EARLY_SUN = RateLine(
    "1212", D("0.002"), destination="sun 00:00-03:00", time_band=bands.parse("sun 00:00-03:00")
)
ANY = RateLine("1212", D("0.02"), destination="any")


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first time
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST, the second time
    ],
)
def test_autumn_change_both_0130s_are_in_the_0100_0200_band(at: datetime) -> None:
    assert at.astimezone(NEW_YORK).strftime("%H:%M") == "01:30"
    assert price([NIGHT_SUN, ANY], at) == NIGHT_SUN


def test_autumn_change_0200_est_is_after_the_band() -> None:
    assert price([NIGHT_SUN, ANY], datetime(2026, 11, 1, 7, 0, tzinfo=UTC)) == ANY


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 3, 8, 4, 59, 59, tzinfo=UTC), ANY),  # Saturday 23:59:59 EST
        (datetime(2026, 3, 8, 5, 0, 0, tzinfo=UTC), EARLY_SUN),  # Sunday 00:00 EST
        (datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), EARLY_SUN),  # 01:59:59 EST
        # One second later the wall clock reads 03:00 EDT: past the band's 03:00 end, though
        # only two hours have passed since local midnight.
        (datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC), ANY),
    ],
)
def test_spring_change_band_edge_follows_the_wall_clock(at: datetime, expected: RateLine) -> None:
    assert price([EARLY_SUN, ANY], at) == expected


def test_unknown_zone_only_matters_when_a_band_is_met() -> None:
    assert price([ANY], datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "Mars/Olympus_Mons") == ANY


def test_london_autumn_change() -> None:
    # Europe/London 2026: 25 October 02:00 BST -> 01:00 GMT, 01:30 at 00:30Z and at 01:30Z.
    line = RateLine("1212", D("0.001"), time_band=bands.parse("sun 01:00-02:00"))
    for at in (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ):
        assert price([line, ANY], at, "Europe/London") == line
    assert price([line, ANY], datetime(2026, 10, 25, 2, 0, tzinfo=UTC), "Europe/London") == ANY


# --- the deck column and an unknown zone -----------------------------------------------------


def test_deck_line_time_band_is_validated_and_canonical() -> None:
    def band(**extra: str) -> str | None:
        return parse_line({"prefix": "1", "rate": "1", **extra}, UTC).time_band

    assert band(time_band=" Sat-Sun ") == "sat-sun"
    assert band(time_band="default") is None
    assert band() is None


def test_a_bad_band_is_a_deck_line_error_naming_the_line() -> None:
    body = b"prefix,rate,time_band\n1,0.01,mon-fri 08:00-18:00\n1212,0.02,mon-fri 8-18\n"
    with pytest.raises(BadDeck) as caught:
        parse_deck(body, "text/csv", UTC)
    assert caught.value.message.startswith(
        "line 3: time_band 'mon-fri 8-18': time range '8-18' is not HH:MM-HH:MM"
    ), caught.value.message


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        zone_of("Mars/Olympus_Mons")


def test_overlapping_bands_of_one_width_match_the_same_line_in_any_order() -> None:
    # Equal width, equal effective_from: the line must not depend on the order the database
    # returned the deck in (replicas, reloads and quotes would price one call differently).
    weekdays = RateLine("1212", D("0.01"), destination="a", time_band=bands.parse("mon-fri"))
    shifted = RateLine("1212", D("0.02"), destination="b", time_band=bands.parse("tue-sat"))
    tuesday = datetime(2026, 1, 13, 15, 0, tzinfo=UTC)
    first = price([weekdays, shifted], tuesday)
    second = price([shifted, weekdays], tuesday)
    assert first is not None and second is not None
    assert first.destination == second.destination

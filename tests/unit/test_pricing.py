"""Pricing rules of contract §3, table-driven and without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cdr_rater.pricing import (
    Call,
    Extension,
    Package,
    RateDeck,
    RateLine,
    TenantPlan,
    billed_seconds,
    charge,
    rate_call,
)

D = Decimal
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

QUEBEC_SELL = RateLine(
    prefix="1418", rate=D("0.015"), increment=60, destination="Canada - 418 Quebec City"
)
QUEBEC_COST = RateLine(prefix="1418", rate=D("0.0052"), increment=6)


def plan_with(lines: list[RateLine], route: list[RateLine] | None = None) -> TenantPlan:
    return TenantPlan(
        home_country="US",
        extensions={
            "100": Extension("pkg", account="100000_VoIP"),
            "101": Extension("pkg", account="100001_VoIP"),
        },
        packages={
            "pkg": Package(route_id="rt" if route is not None else None, deck=RateDeck(lines))
        },
        routes={"rt": RateDeck(route)} if route is not None else {},
    )


@pytest.mark.parametrize(
    ("duration", "price", "cost"),
    [
        (11, "0.01500000", "0.00104000"),  # seed 002 worked example
        (55, "0.01500000", "0.00520000"),
        (60, "0.01500000", "0.00520000"),
        (61, "0.03000000", "0.00572000"),
        (0, "0", None),
    ],
)
def test_seed_002_worked_example(duration: int, price: str, cost: str | None) -> None:
    plan = plan_with([QUEBEC_SELL], route=[QUEBEC_COST])
    rating = rate_call(Call("100", "14185550100", T0, duration), plan, default_package=None)
    assert rating.rated
    assert rating.total == D(price)
    assert rating.cost == (D(cost) if cost is not None else D(0))
    assert rating.destination_name == "Canada - 418 Quebec City"
    assert rating.matched_prefix == "1418"


@pytest.mark.parametrize(
    ("duration", "answered", "initial", "increment", "expected"),
    [
        (0, True, 60, 60, 0),
        (30, False, 60, 60, 0),
        (1, True, 30, 6, 30),
        (30, True, 30, 6, 30),
        (31, True, 30, 6, 36),
        (37, True, 30, 6, 42),
        (61, True, 60, 60, 120),
        (86400, True, 1, 1, 86400),
    ],
)
def test_billed_seconds(
    duration: int, answered: bool, initial: int, increment: int, expected: int
) -> None:
    line = RateLine(prefix="1", rate=D(1), increment=increment, initial_increment=initial)
    assert billed_seconds(duration, answered, line) == expected


def test_charge_rounds_half_up_to_eight_places_with_connect_fee() -> None:
    line = RateLine(prefix="1", rate=D("0.000000005"), connect_fee=D("0.1"))
    # 0.1 + 0.000000005 * 60/60 = 0.100000005 -> half-up -> 0.10000001
    assert charge(line, 60) == D("0.10000001")
    assert charge(line, 0) == D(0)
    assert isinstance(charge(line, 60), Decimal)


def test_longest_prefix_wins() -> None:
    deck = RateDeck([RateLine(prefix="1", rate=D("0.01")), RateLine(prefix="1613", rate=D("0.02"))])
    assert deck.match("16138220000", T0).prefix == "1613"  # type: ignore[union-attr]
    assert deck.match("12125550000", T0).prefix == "1"  # type: ignore[union-attr]
    assert deck.match("442071234567", T0) is None


def test_effective_dates_and_latest_effective_from_on_a_tie() -> None:
    old = RateLine(prefix="1613", rate=D("0.01"), effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    new = RateLine(prefix="1613", rate=D("0.02"), effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    ended = RateLine(
        prefix="16138",
        rate=D("0.05"),
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
        effective_to=datetime(2025, 1, 1, tzinfo=UTC),
    )
    deck = RateDeck([old, new, ended])
    assert deck.match("16138220000", T0) is new
    assert deck.match("16138220000", datetime(2024, 6, 1, tzinfo=UTC)) is ended
    assert deck.match("16138220000", datetime(2025, 6, 1, tzinfo=UTC)) is old
    assert deck.match("16138220000", datetime(2019, 6, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("destination", "prefix"),
    [
        ("16138220000", "1613"),  # national with trunk 1
        ("6138220000", "1613"),  # national number gets the home calling code
        ("+1 (613) 822-0000", "1613"),  # punctuation dropped
        ("011442071234567", "44"),  # North American international prefix removed
        ("+442071234567", "44"),
    ],
)
def test_numbers_are_normalised_before_matching(destination: str, prefix: str) -> None:
    plan = plan_with(
        [RateLine(prefix="1613", rate=D("0.02")), RateLine(prefix="44", rate=D("0.1"))]
    )
    rating = rate_call(Call("100", destination, T0, 60), plan, default_package=None)
    assert rating.matched_prefix == prefix


def test_unrated_reasons() -> None:
    plan = plan_with([RateLine(prefix="1613", rate=D("0.02"))])
    no_package = rate_call(Call("555", "16138220000", T0, 60), plan, default_package=None)
    assert (no_package.rated, no_package.unrated_reason) == (False, "no_package")
    default = rate_call(Call("555", "16138220000", T0, 60), plan, default_package="pkg")
    assert default.rated and default.total == D("0.02")
    no_rate = rate_call(Call("100", "442071234567", T0, 60), plan, default_package=None)
    assert (no_rate.rated, no_rate.unrated_reason) == (False, "no_rate")
    no_time = rate_call(Call("100", "16138220000", None, 60), plan, default_package=None)
    assert (no_time.rated, no_time.unrated_reason) == (False, "invalid_start_time")


def test_not_answered_is_free_and_on_net_is_free() -> None:
    plan = plan_with([RateLine(prefix="1", rate=D("0.02"), connect_fee=D("0.5"))])
    busy = rate_call(Call("100", "16138220000", T0, 60, "BUSY"), plan, default_package=None)
    assert busy.rated and busy.total == 0 and busy.call_billing == "free"
    on_net = rate_call(Call("100", "101", T0, 60), plan, default_package=None)
    assert on_net.rated and on_net.call_type == "2T" and on_net.total == 0


def test_inbound_uses_inbound_lines_of_the_destination_extension() -> None:
    inbound = RateLine(prefix="1800", rate=D("0.03"), direction="inbound")
    plan = plan_with([RateLine(prefix="1", rate=D("0.02")), inbound])
    toll_free_caller = rate_call(Call("18005550000", "100", T0, 60), plan, default_package=None)
    assert toll_free_caller.call_type == "IB" and toll_free_caller.total == D("0.03")
    other = rate_call(Call("16135550000", "100", T0, 60), plan, default_package=None)
    assert other.rated and other.total == 0 and other.call_billing == "free"


@pytest.mark.parametrize(
    ("destination", "call_type"),
    [("442071234567", "I"), ("18005551234", "8"), ("19005551234", "9"), ("12125550123", "S")],
)
def test_call_types(destination: str, call_type: str) -> None:
    plan = plan_with([RateLine(prefix="1", rate=D("0.02")), RateLine(prefix="44", rate=D("0.1"))])
    dest = "+" + destination if destination.startswith("44") else destination
    assert rate_call(Call("100", dest, T0, 60), plan, default_package=None).call_type == call_type


def test_a_price_beyond_numeric_20_8_is_held_unrated_not_refused_by_postgresql() -> None:
    from datetime import UTC, datetime

    from cdr_rater.handler import rate_events
    from cdr_rater.pricing import Package, RateDeck, RateLine, TenantPlan
    from cdrmodel.events import CdrSubmitted, new_cdr_id

    # The largest rate a deck accepts, over a day-long call: far beyond 10^12.
    line = RateLine(prefix="1", rate=Decimal("999999999999"), increment=60)
    plan = TenantPlan(home_country="US", packages={"p": Package(None, RateDeck([line]))})
    now = datetime.now(UTC)
    event = CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id="D",
        api_account="A",
        received_at=now,
        originating_number="200",
        destination_number="16135550100",
        start_time=now,
        duration=86400,
    )
    (row,) = rate_events([event], plan, default_packages={"A": "p"}, currency="USD", now=now)
    assert (row["rated"], row["unrated_reason"], row["total"]) == (
        False,
        "amount_out_of_range",
        None,
    )

"""Pricing rules of contract §3 (1-7) at their edges, table-driven, each case worked out by
hand, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from cdr_rater import bands
from cdr_rater.handler import rate_events
from cdr_rater.pricing import (
    Call,
    Extension,
    Package,
    RateDeck,
    RateLine,
    TenantPlan,
    billed_seconds,
    charge,
    party_number,
    rate_call,
)
from cdrmodel.events import CdrSubmitted, new_cdr_id

D = Decimal
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NYC = "12125550123"


def plan(
    lines: list[RateLine],
    route: list[RateLine] | None = None,
    *,
    home: str = "US",
    extensions: dict[str, Extension] | None = None,
) -> TenantPlan:
    return TenantPlan(
        home_country=home,
        extensions=(
            extensions
            if extensions is not None
            else {"100": Extension("pkg", "100000_VoIP"), "101": Extension("pkg")}
        ),
        packages={
            "pkg": Package("rt" if route is not None else None, RateDeck(lines)),
            "other": Package(None, RateDeck([RateLine("1", D("9"))])),
        },
        routes={"rt": RateDeck(route)} if route is not None else {},
    )


def out(duration: int, line: RateLine, disposition: str = "ANSWERED") -> tuple[int, Decimal]:
    rating = rate_call(
        Call("100", NYC, T0, duration, disposition), plan([line]), default_package=None
    )
    assert rating.rated and rating.total is not None
    return rating.billed_seconds, rating.total


# (initial, increment, rate per minute, duration, billed seconds, price)
INCREMENTS = [
    # 60/60
    (None, 60, "0.02", 1, 60, "0.02000000"),
    (None, 60, "0.02", 59, 60, "0.02000000"),
    (None, 60, "0.02", 60, 60, "0.02000000"),  # exactly on the boundary
    (None, 60, "0.02", 61, 120, "0.04000000"),
    (None, 60, "0.02", 120, 120, "0.04000000"),
    (None, 60, "0.02", 121, 180, "0.06000000"),
    # 6/6
    (6, 6, "0.012", 1, 6, "0.00120000"),
    (6, 6, "0.012", 6, 6, "0.00120000"),
    (6, 6, "0.012", 7, 12, "0.00240000"),
    (6, 6, "0.012", 60, 60, "0.01200000"),
    (6, 6, "0.012", 61, 66, "0.01320000"),
    # 30/6
    (30, 6, "0.03", 1, 30, "0.01500000"),
    (30, 6, "0.03", 30, 30, "0.01500000"),
    (30, 6, "0.03", 31, 36, "0.01800000"),
    (30, 6, "0.03", 36, 36, "0.01800000"),
    (30, 6, "0.03", 37, 42, "0.02100000"),
    # 1/1
    (1, 1, "0.06", 1, 1, "0.00100000"),
    (1, 1, "0.06", 59, 59, "0.05900000"),
    (1, 1, "0.06", 86400, 86400, "86.40000000"),
    # initial larger than the duration, and the seconds after it
    (120, 60, "0.06", 5, 120, "0.12000000"),
    (120, 60, "0.06", 120, 120, "0.12000000"),
    (120, 60, "0.06", 121, 180, "0.18000000"),
    # initial 0: whole increments from the first second
    (0, 60, "0.06", 1, 60, "0.06000000"),
    (0, 60, "0.06", 60, 60, "0.06000000"),
    (0, 30, "0.06", 61, 90, "0.09000000"),
]


@pytest.mark.parametrize(
    ("initial", "increment", "rate", "duration", "billed", "price"), INCREMENTS
)
def test_billed_seconds_and_price(
    initial: int | None, increment: int, rate: str, duration: int, billed: int, price: str
) -> None:
    line = RateLine("1", D(rate), increment=increment, initial_increment=initial)
    assert out(duration, line) == (billed, D(price))


@pytest.mark.parametrize("disposition", ["NO ANSWER", "BUSY", "FAILED", "CONGESTION"])
def test_unanswered_calls_bill_nothing_not_even_the_connect_fee(disposition: str) -> None:
    line = RateLine("1", D("0.02"), connect_fee=D("0.5"))
    rating = rate_call(Call("100", NYC, T0, 30, disposition), plan([line]), default_package=None)
    assert (rating.rated, rating.billed_seconds, rating.total) == (True, 0, D(0))
    assert rating.call_billing == "free"


def test_zero_second_answered_call_bills_nothing() -> None:
    line = RateLine("1", D("0.02"), connect_fee=D("0.5"))
    assert out(0, line) == (0, D(0))


@pytest.mark.parametrize(
    ("rate", "fee", "duration", "price"),
    [
        ("0", "0.25", 30, "0.25000000"),  # connect fee alone
        ("0", "0.25", 1, "0.25000000"),
        ("0.02", "0.1", 61, "0.14000000"),  # fee + two minutes
        ("0", "0", 30, "0.00000000"),  # a free line: rated, price 0
    ],
)
def test_connect_fee(rate: str, fee: str, duration: int, price: str) -> None:
    line = RateLine("1", D(rate), connect_fee=D(fee))
    assert out(duration, line)[1] == D(price)


@pytest.mark.parametrize(
    ("rate", "fee", "duration", "price"),
    [
        ("0.00000001", "0", 30, "0.00000001"),  # 0.000000005: a tie, half-up
        ("0.00000001", "0", 29, "0.00000000"),  # 0.00000000483...
        ("0.00000006", "0", 5, "0.00000001"),  # 0.000000005 exactly
        ("0.00000003", "0", 9, "0.00000000"),  # 0.0000000045
        ("0.00000059", "0", 1, "0.00000001"),  # 0.00000000983...
        ("0.12345678", "0", 7, "0.01440329"),  # 0.014403291
        ("0.12345679", "0", 30, "0.06172840"),  # 0.061728395: tie at the 9th place
        ("0.00000001", "0.00000001", 30, "0.00000002"),  # 0.000000015 -> up
        ("999999.99999999", "0", 86400, "1439999999.99998560"),
    ],
)
def test_rounding_at_the_eighth_place(rate: str, fee: str, duration: int, price: str) -> None:
    line = RateLine("1", D(rate), increment=1, initial_increment=1, connect_fee=D(fee))
    total = out(duration, line)[1]
    assert total == D(price)
    assert total.as_tuple().exponent == -8  # always 8 places, never exponent notation


def test_charge_rounds_negative_amounts_away_from_zero() -> None:
    # Decks refuse negative amounts; the arithmetic is still symmetric (a credit line).
    assert charge(RateLine("1", D("-0.00000006"), increment=1), 5) == D("-0.00000001")


SEED_SELL = RateLine("1418", D("0.015"), destination="Canada - 418 Quebec City")
SEED_COST = RateLine("1418", D("0.0052"), increment=6)


@pytest.mark.parametrize(
    ("duration", "billed", "price", "cost"),
    [
        (11, 60, "0.01500000", "0.00104000"),  # contract §3, from seed 002
        (55, 60, "0.01500000", "0.00520000"),
        (60, 60, "0.01500000", "0.00520000"),
        (61, 120, "0.03000000", "0.00572000"),
        (0, 0, "0", "0"),
    ],
)
def test_seed_002_worked_example(duration: int, billed: int, price: str, cost: str) -> None:
    rating = rate_call(
        Call("100", "14185550100", T0, duration),
        plan([SEED_SELL], [SEED_COST]),
        default_package=None,
    )
    assert (rating.rated, rating.billed_seconds) == (True, billed)
    assert (rating.total, rating.cost) == (D(price), D(cost))
    assert (rating.destination_name, rating.matched_prefix) == ("Canada - 418 Quebec City", "1418")
    assert (rating.line, rating.cost_line) == (SEED_SELL, SEED_COST)
    assert rating.call_type == "I"  # Canada, seen from a US tenant


# --- rule 3: the line -------------------------------------------------------------------


def test_longest_prefix_wins_over_a_shorter_one_and_a_later_date() -> None:
    short_new = RateLine("1", D("0.01"), effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    long_old = RateLine("1212", D("0.02"), effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    deck = RateDeck([short_new, long_old, RateLine("12", D("0.03"))])
    assert deck.match(NYC, T0) is long_old


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), "old"),
        (datetime(2026, 3, 1, 0, 0, 0, tzinfo=UTC), "new"),  # the switch second itself
        (datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC), "new"),
        # the same instant written with another offset
        (datetime(2026, 2, 28, 19, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "new"),
        (datetime(2026, 2, 28, 18, 59, 59, tzinfo=timezone(timedelta(hours=-5))), "old"),
    ],
)
def test_effective_date_switch_at_the_start_second(at: datetime, expected: str) -> None:
    switch = datetime(2026, 3, 1, tzinfo=UTC)
    old = RateLine("1212", D("0.01"), destination="old", effective_to=switch)
    new = RateLine("1212", D("0.02"), destination="new", effective_from=switch)
    line = RateDeck([old, new]).match(NYC, at)
    assert line is not None and line.destination == expected


def test_tie_on_prefix_takes_the_latest_effective_from_among_effective_lines() -> None:
    lines = [
        RateLine("1212", D("0.01"), destination="open"),
        RateLine(
            "1212", D("0.02"), destination="2025", effective_from=datetime(2025, 1, 1, tzinfo=UTC)
        ),
        RateLine(
            "1212", D("0.03"), destination="2026", effective_from=datetime(2026, 1, 1, tzinfo=UTC)
        ),
        RateLine(
            "1212", D("0.04"), destination="future", effective_from=datetime(2027, 1, 1, tzinfo=UTC)
        ),
    ]
    deck = RateDeck(lines)
    names = [
        deck.match(NYC, datetime(y, 6, 1, tzinfo=UTC)).destination  # type: ignore[union-attr]
        for y in (2024, 2025, 2026, 2027)
    ]
    assert names == ["open", "2025", "2026", "future"]


def test_an_expired_longer_prefix_falls_back_to_the_shorter_one() -> None:
    expired = RateLine("1212", D("0.5"), effective_to=datetime(2026, 1, 1, tzinfo=UTC))
    deck = RateDeck([expired, RateLine("1", D("0.01"))])
    assert deck.match(NYC, T0).prefix == "1"  # type: ignore[union-attr]


def test_no_line_is_no_rate_and_keeps_the_number_and_type() -> None:
    rating = rate_call(
        Call("100", "+442071234567", T0, 60), plan([RateLine("1", D("1"))]), default_package=None
    )
    assert (rating.rated, rating.unrated_reason) == (False, "no_rate")
    assert (rating.number, rating.call_type, rating.total) == ("442071234567", "I", None)


def test_inbound_lines_do_not_price_outbound_calls_and_vice_versa() -> None:
    deck = RateDeck([RateLine("1", D("0.05"), direction="inbound")])
    assert deck.match(NYC, T0) is None
    assert deck.match(NYC, T0, "inbound") is not None


# --- rule 2: the number ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("home", "dialled", "number"),
    [
        ("US", "011442071234567", "442071234567"),  # NANP international prefix
        ("US", "+442071234567", "442071234567"),
        ("US", "+1 (212) 555-0123", NYC),
        ("US", "2125550123", NYC),  # national: the home calling code added
        ("US", "12125550123", NYC),  # national with the trunk 1
        ("CA", "6135550100", "16135550100"),
        ("GB", "00442071234567", "442071234567"),  # the 00 of most countries
        ("GB", "0012125550123", NYC),
        ("GB", "02071234567", "442071234567"),  # national with trunk 0
        ("GB", "+44 (0)20 7123 4567", "442071234567"),
        ("FR", "0140000000", "33140000000"),
        ("FR", "0012125550123", NYC),
        ("AU", "0011442071234567", "442071234567"),  # Australia's 0011
        ("AU", "0298765432", "61298765432"),
        ("JP", "010442071234567", "442071234567"),  # Japan's 010
        ("DE", "00442071234567", "442071234567"),
        ("DE", "030123456", "4930123456"),
    ],
)
def test_numbers_are_normalised_to_e164_digits(home: str, dialled: str, number: str) -> None:
    lines = [RateLine(str(p), D("0.01")) for p in range(1, 10)]
    rating = rate_call(Call("100", dialled, T0, 60), plan(lines, home=home), default_package=None)
    assert rating.number == number
    assert party_number(Call("100", dialled, T0, 60), plan(lines, home=home)) == (
        "outbound",
        number,
    )


# --- rule 1: the package; inbound; on-net -------------------------------------------------


def test_package_of_the_originating_extension_beats_the_default() -> None:
    p = plan([RateLine("1", D("0.01"))])
    rating = rate_call(Call("100", NYC, T0, 60), p, default_package="other")
    assert (rating.package_id, rating.total, rating.extension) == ("pkg", D("0.01"), "100")
    assert rating.account == "100000_VoIP"


def test_default_package_when_the_origin_is_not_an_extension() -> None:
    p = plan([RateLine("1", D("0.01"))])
    rating = rate_call(Call("16175550100", NYC, T0, 60), p, default_package="other")
    assert (rating.package_id, rating.total, rating.extension) == ("other", D("9"), None)


def test_an_extension_without_a_package_uses_the_default() -> None:
    p = plan([RateLine("1", D("0.01"))], extensions={"100": Extension(None, "acct")})
    rating = rate_call(Call("100", NYC, T0, 60), p, default_package="other")
    assert (rating.package_id, rating.extension, rating.account) == ("other", "100", "acct")


@pytest.mark.parametrize("default", [None, "missing"])
def test_no_package(default: str | None) -> None:
    p = plan([RateLine("1", D("0.01"))])
    rating = rate_call(Call("16175550100", NYC, T0, 60), p, default_package=default)
    assert (rating.rated, rating.unrated_reason, rating.total) == (False, "no_package", None)
    assert rating.call_billing is None


def test_missing_start_time_is_unrated_before_anything_is_priced() -> None:
    rating = rate_call(
        Call("100", NYC, None, 60), plan([RateLine("1", D("1"))]), default_package=None
    )
    assert (rating.rated, rating.unrated_reason) == (False, "invalid_start_time")


def test_on_net_call_between_two_extensions_is_free_and_2t() -> None:
    p = plan([RateLine("1", D("1"), connect_fee=D("1"))], [RateLine("1", D("1"))])
    rating = rate_call(Call("100", "101", T0, 600), p, default_package="other")
    assert (rating.rated, rating.call_type, rating.total, rating.cost) == (True, "2T", 0, None)
    assert rating.call_billing == "free"


INBOUND_DECK = [
    RateLine("1", D("0.02")),  # outbound: never prices an inbound call
    RateLine("1", D("0.01"), direction="inbound", destination="inbound NANP"),
    RateLine("1212", D("0.03"), 6, 6, direction="inbound", destination="inbound NYC"),
]


@pytest.mark.parametrize(
    ("caller", "prefix", "billed", "price"),
    [
        ("2125550100", "1212", 36, "0.01800000"),  # 31 s in 6 s steps
        ("+1 617 555 0100", "1", 60, "0.01000000"),
        ("011442071234567", None, 0, "0"),  # no inbound line: free
    ],
)
def test_inbound_uses_the_destination_extensions_inbound_lines(
    caller: str, prefix: str | None, billed: int, price: str
) -> None:
    route = [RateLine("1212", D("0.006"), 1, 1, direction="inbound")]
    rating = rate_call(
        Call(caller, "100", T0, 31), plan(INBOUND_DECK, route), default_package="other"
    )
    assert (rating.rated, rating.direction, rating.call_type) == (True, "inbound", "IB")
    assert (rating.package_id, rating.extension) == ("pkg", "100")
    assert (rating.matched_prefix, rating.billed_seconds, rating.total) == (
        prefix,
        billed,
        D(price),
    )
    assert rating.call_billing == ("free" if price == "0" else "billed")
    assert rating.cost == (D("0.0031") if prefix == "1212" else None)


def test_free_inbound_still_carries_its_termination_cost() -> None:
    route = [RateLine("44", D("0.06"), 1, 1, direction="inbound")]
    rating = rate_call(
        Call("+442071234567", "100", T0, 30), plan(INBOUND_DECK, route), default_package=None
    )
    assert (rating.total, rating.cost, rating.call_billing) == (0, D("0.03"), "free")


def test_cost_is_null_without_a_route_or_a_route_line() -> None:
    sell = [RateLine("1", D("0.02"))]
    no_route = rate_call(Call("100", NYC, T0, 60), plan(sell), default_package=None)
    assert (no_route.route_id, no_route.cost) == (None, None)
    uncovered = rate_call(
        Call("100", NYC, T0, 60), plan(sell, [RateLine("44", D("1"))]), default_package=None
    )
    assert (uncovered.route_id, uncovered.cost, uncovered.total) == ("rt", None, D("0.02"))


def test_cost_uses_its_own_increments() -> None:
    sell = [RateLine("1", D("0.02"), connect_fee=D("0.01"))]
    route = [RateLine("1212", D("0.006"), 6, 30, connect_fee=D("0.001"))]
    rating = rate_call(Call("100", NYC, T0, 31), plan(sell, route), default_package=None)
    # sell 60 s: 0.01 + 0.02; cost 30 + 6 = 36 s: 0.001 + 0.006 * 36 / 60 = 0.0046
    assert (rating.total, rating.cost) == (D("0.03"), D("0.0046"))
    assert rating.total - rating.cost == D("0.0254")  # margin


def test_billed_seconds_guards_a_zero_increment() -> None:
    # Decks refuse increment 0; a line built in code still bills whole seconds after it.
    line = RateLine("1", D("0.06"), increment=0, initial_increment=10)
    assert billed_seconds(13, True, line) == 13


# --- the handler around it: a price that cannot be stored, a fault while pricing --------------


def rate_through_handler(plan: TenantPlan, duration: int) -> dict[str, object]:
    now = datetime(2026, 1, 15, 13, 30, tzinfo=UTC)
    event = CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id="D",
        api_account="A",
        received_at=now,
        originating_number="200",
        destination_number="16135550100",
        start_time=now,
        duration=duration,
    )
    (row,) = rate_events([event], plan, default_packages={"A": "p"}, currency="USD", now=now)
    return row


def test_a_price_beyond_numeric_20_8_is_held_unrated_not_refused_by_postgresql() -> None:
    # The largest rate a deck accepts, over a day-long call: far beyond 10^12.
    line = RateLine(prefix="1", rate=Decimal("999999999999"), increment=60)
    p = TenantPlan(home_country="US", packages={"p": Package(None, RateDeck([line]))})
    row = rate_through_handler(p, 86400)
    assert (row["rated"], row["unrated_reason"], row["total"]) == (
        False,
        "amount_out_of_range",
        None,
    )


def test_unknown_zone_with_a_banded_line_holds_the_call_unrated_not_the_batch() -> None:
    line = RateLine("1", D("0.01"), time_band=bands.parse("mon-fri 08:00-18:00"))
    p = TenantPlan(
        home_country="US",
        timezone="Mars/Olympus_Mons",
        packages={"p": Package(None, RateDeck([line]))},
    )
    row = rate_through_handler(p, 60)
    assert (row["rated"], row["unrated_reason"]) == (False, "rating_error")

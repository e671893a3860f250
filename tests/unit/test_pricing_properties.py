"""Pricing invariants over large input spaces (hypothesis), each against a plain oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from cdr_rater.pricing import RateDeck, RateLine, billed_seconds, charge

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

amounts = st.decimals(min_value=0, max_value=Decimal("999999.99999999"), places=8)
increments = st.integers(min_value=1, max_value=600)
initials = st.none() | st.integers(min_value=0, max_value=600)
durations = st.integers(min_value=0, max_value=86400)


@st.composite
def lines(draw: st.DrawFn) -> RateLine:
    return RateLine(
        "1",
        draw(amounts),
        increment=draw(increments),
        initial_increment=draw(initials),
        connect_fee=draw(amounts),
    )


@given(lines(), st.integers(min_value=1, max_value=86400))
def test_answered_calls_bill_at_least_their_duration_and_less_than_one_step_more(
    line: RateLine, duration: int
) -> None:
    billed = billed_seconds(duration, True, line)
    assert billed >= duration
    if billed > line.first_increment:
        assert billed - line.increment < duration
        assert (billed - line.first_increment) % line.increment == 0
    else:
        assert billed == line.first_increment


@given(lines(), durations, durations)
def test_price_is_monotone_in_duration(line: RateLine, a: int, b: int) -> None:
    short, long = sorted((a, b))
    assert charge(line, billed_seconds(short, True, line)) <= charge(
        line, billed_seconds(long, True, line)
    )


def half_up_8(value: Fraction) -> Decimal:
    """The oracle: rule 5's rounding done on an exact fraction."""
    scaled = value * 10**8
    units = int(scaled)  # towards zero
    if abs(scaled - units) * 2 >= 1:
        units += 1 if scaled > 0 else -1
    return Decimal(units).scaleb(-8)


@given(
    st.decimals(min_value=-(10**6), max_value=10**6, places=12),
    st.decimals(min_value=-(10**6), max_value=10**6, places=12),
    st.integers(min_value=1, max_value=86400),
)
def test_charge_equals_the_exact_fraction_rounded_half_up(
    rate: Decimal, fee: Decimal, billed: int
) -> None:
    # More places than a deck allows, and negatives: the arithmetic itself never rounds early.
    exact = Fraction(fee) + Fraction(rate) * billed / 60
    assert charge(RateLine("1", rate, connect_fee=fee), billed) == half_up_8(exact)


@st.composite
def decks(draw: st.DrawFn) -> list[RateLine]:
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        start = draw(st.none() | st.integers(min_value=0, max_value=10))
        length = draw(st.none() | st.integers(min_value=1, max_value=10))
        out.append(
            RateLine(
                draw(st.sampled_from(["1", "12", "121", "1212", "2", "44"])),
                Decimal(len(out)),  # tells lines apart
                effective_from=None if start is None else EPOCH + timedelta(days=start),
                effective_to=(
                    None if length is None else EPOCH + timedelta(days=(start or 0) + length)
                ),
                direction=draw(st.sampled_from(["outbound", "inbound"])),
            )
        )
    return out


@given(decks(), st.integers(min_value=-1, max_value=25), st.sampled_from(["outbound", "inbound"]))
def test_match_is_the_longest_effective_prefix_then_the_latest_start(
    deck: list[RateLine], day: int, direction: str
) -> None:
    at = EPOCH + timedelta(days=day, hours=12)
    number = "12125550123"
    candidates = [
        line
        for line in deck
        if line.direction == direction and number.startswith(line.prefix) and line.effective_at(at)
    ]
    got = RateDeck(deck).match(number, at, direction)
    if not candidates:
        assert got is None
        return
    assert got is not None
    longest = max(len(line.prefix) for line in candidates)
    best = [line for line in candidates if len(line.prefix) == longest]
    latest = max(line.effective_from or datetime.min.replace(tzinfo=UTC) for line in best)
    assert got in best
    assert (got.effective_from or datetime.min.replace(tzinfo=UTC)) == latest

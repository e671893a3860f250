"""explain.describe without I/O: what a Rating says about how a call was priced, on the same
pricing functions that rated it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from cdr_rater import bands
from cdr_rater.explain import describe
from cdr_rater.pricing import (
    Call,
    Extension,
    Package,
    RateDeck,
    RateLine,
    Rating,
    TenantPlan,
    rate_call,
)

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
SELL = RateLine(
    prefix="1418",
    rate=Decimal("0.015"),
    destination="Canada - 418 Quebec City",
    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
)
COST = RateLine(prefix="1418", rate=Decimal("0.0052"), increment=6)


def _plan(*sell: RateLine) -> TenantPlan:
    return TenantPlan(
        extensions={"100": Extension("pkg", "100000_VoIP"), "101": Extension("pkg")},
        packages={"pkg": Package("rt", RateDeck(sell or [SELL]))},
        routes={"rt": RateDeck([COST])},
    )


def _explain(call: Call, plan: TenantPlan, default: str | None = None) -> dict:
    return describe(call, rate_call(call, plan, default_package=default))


def test_the_seed_002_example_is_explained_with_both_sides_worked_out() -> None:
    how = _explain(Call("100", "14185550100", START, 11), _plan())
    assert how["package"]["why"] == "extension" and how["free_because"] is None
    assert (how["total"], how["cost"], how["margin"]) == ("0.01500000", "0.00104000", "0.01396000")
    assert how["sell"]["line"]["effective_from"] == "2026-01-01T00:00:00+00:00"
    assert how["sell"]["line"]["effective_to"] is None
    assert how["sell"]["line"]["time_band"] is None
    assert how["termination"]["increments"]["further_increments"] == 1
    assert how["termination"]["arithmetic"] == "0.00000000 + 0.00520000 * 12 / 60 = 0.00104000"
    # Stored as JSONB: JSON-native values only.
    assert orjson.loads(orjson.dumps(how)) == how


def test_a_connect_fee_and_a_rate_beyond_8_places_are_shown_as_computed() -> None:
    line = RateLine(
        prefix="1418",
        rate=Decimal("0.0000000125"),
        increment=30,
        initial_increment=6,
        connect_fee=Decimal("0.01"),
    )
    how = _explain(Call("100", "14185550100", START, 61), _plan(line))
    sell = how["sell"]
    assert sell["increments"]["rule"] == "6 + ceil((61 - 6) / 30) * 30 = 66 s"
    assert sell["increments"]["further_increments"] == 2
    assert sell["line"]["rate"] == "0.0000000125"  # not rounded away: the arithmetic holds
    # 0.01 + 0.0000000125 * 66 / 60 = 0.01000001375, half-up to 8 places.
    assert sell["arithmetic"] == "0.01000000 + 0.0000000125 * 66 / 60 = 0.01000001"


def test_on_net_and_default_package_and_no_package_say_why() -> None:
    on_net = _explain(Call("100", "101", START, 30), _plan())
    assert on_net["free_because"] == "on_net" and on_net["call_type"] == "2T"
    assert on_net["sell"] is None and on_net["total"] == "0.00000000"
    by_default = _explain(Call("555", "14185550100", START, 30), _plan(), default="pkg")
    assert by_default["package"] == {
        "id": "pkg",
        "why": "default_package",
        "extension": None,
        "route": "rt",
    }
    none = _explain(Call("555", "14185550100", START, 30), _plan())
    assert none["package"]["why"] == "none" and none["unrated_reason"] == "no_package"


def test_an_unanswered_call_and_a_rating_fault_are_described_without_amounts() -> None:
    busy = _explain(Call("100", "14185550100", START, 40, "BUSY"), _plan())
    increments = busy["sell"]["increments"]
    assert increments["answered"] is False and increments["billed_seconds"] == 0
    assert increments["rule"] == "BUSY, 40 s: nothing billed"
    fault = describe(Call("100", "1", None, 5), Rating(rated=False, unrated_reason="rating_error"))
    assert fault["unrated_reason"] == "rating_error" and fault["call"]["start_time"] is None
    assert fault["normalized_number"] is None and fault["sell"] is None
    assert fault["total"] is None and fault["margin"] is None


def test_a_line_with_a_time_band_shows_it() -> None:
    line = RateLine(
        prefix="1418", rate=Decimal("0.015"), time_band=bands.parse("sat-sun 08:00-18:00")
    )
    how = _explain(Call("100", "14185550100", START, 11), _plan(line))
    assert how["sell"]["line"]["time_band"] == "sat-sun 08:00-18:00"

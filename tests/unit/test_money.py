"""Money on the wire: fixed point with 8 places, minor units from CLDR's currency table."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cdr_rater.admin.schemas import TenantUpsert
from cdrmodel.money import fmt8, known_currency, minor_units, storable

D = Decimal
FIXED8 = re.compile(r"-?\d+\.\d{8}")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("0E-8"), "0.00000000"),  # what NUMERIC(20,8) hands back for a free call
        (D(0), "0.00000000"),
        (D("1E-8"), "0.00000001"),
        (D("1E-7"), "0.00000010"),  # a deck rate of 0.0000001
        (D("0.015"), "0.01500000"),
        (D("123456789012.12345678"), "123456789012.12345678"),  # 12 integer digits
        (D("999999999999.99999999"), "999999999999.99999999"),  # NUMERIC(20,8) maximum
        (D("1E+11"), "100000000000.00000000"),
        (D("-0.00040000"), "-0.00040000"),  # a negative margin: cost above price
        (D("-123456789012.5"), "-123456789012.50000000"),
        (D("0.000000005"), "0.00000001"),  # half-up at the 9th place
        (D("-0.000000004"), "0.00000000"),  # rounds to zero: no "-0.00000000"
    ],
)
def test_fmt8_is_fixed_point_with_eight_places(value: Decimal, text: str) -> None:
    assert fmt8(value) == text


def test_fmt8_keeps_none() -> None:
    assert fmt8(None) is None


@given(
    st.decimals(
        min_value=D("-999999999999.99999999"),
        max_value=D("999999999999.99999999"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_fmt8_never_uses_exponents_and_round_trips(value: Decimal) -> None:
    text = fmt8(value)
    assert text is not None and FIXED8.fullmatch(text), text
    assert D(text) == value


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (D("0E-8"), "USD", 0),
        (D("1E-8"), "USD", 0),
        (D("0.005"), "USD", 1),  # half-up
        (D("0.03"), "USD", 3),
        (D("123456789012.34567890"), "USD", 12345678901235),
        (D("-0.0040"), "USD", 0),
        (D("-0.005"), "USD", -1),  # half away from zero, as for positive amounts
        (D("1234.5"), "JPY", 1235),  # no minor unit
        (D("1234.4"), "JPY", 1234),
        (D("1.2345"), "KWD", 1235),  # fils: three places
        (D("1.2344"), "KWD", 1234),
        (D("1.2345"), "kwd", 1235),  # the code's case does not matter
        (D("2.50"), "EUR", 250),
        (D("1.5"), "XYZ", 150),  # unknown code: two places (see money.currency_exponent)
    ],
)
def test_minor_units_follow_the_currency_exponent(
    amount: Decimal, currency: str, minor: int
) -> None:
    assert minor_units(amount, currency) == minor


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "KWD", "GBP", "CHF"])
def test_known_currencies(code: str) -> None:
    assert known_currency(code)
    assert TenantUpsert(currency=code).currency == code


@pytest.mark.parametrize("code", ["XYZ", "ABC", "usd", "US", "USDX", ""])
def test_tenant_refuses_an_unknown_currency(code: str) -> None:
    assert not known_currency(code)
    with pytest.raises(ValidationError, match="currency"):
        TenantUpsert(currency=code)


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("0", True),
        ("0.00000001", True),
        ("0.000000010", True),  # trailing zero: still 8 places of value
        ("0.000000005", False),  # a 9th place would be rounded away
        ("999999999999.99999999", True),
        ("1000000000000", False),
        ("-999999999999.99999999", True),
        ("1E+25", False),
        ("NaN", False),
    ],
)
def test_storable_is_exactly_what_numeric_20_8_holds(value: str, fits: bool) -> None:
    assert storable(Decimal(value)) is fits

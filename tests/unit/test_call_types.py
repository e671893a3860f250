"""Call types of seed 001 (I, M, L, S, 8, 9, O) and what a local-form number is matched on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cdr_rater.pricing import Call, Extension, Package, RateDeck, RateLine, TenantPlan, rate_call
from cdrmodel import phone

D = Decimal
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

DECK = [
    RateLine(prefix="1", rate=D("0.0200"), destination="USA and Canada"),
    RateLine(prefix="1613", rate=D("0.0150"), destination="Canada - 613 Ottawa"),
    RateLine(prefix="1212", rate=D("0.0100"), destination="USA - New York"),
    RateLine(prefix="44", rate=D("0.0500"), destination="United Kingdom"),
    RateLine(prefix="447", rate=D("0.1000"), destination="United Kingdom - mobile"),
    RateLine(prefix="1", rate=D("0.0100"), direction="inbound"),
    RateLine(prefix="1613", rate=D("0.0300"), direction="inbound"),
]


def plan(home: str, lines: list[RateLine] = DECK) -> TenantPlan:
    return TenantPlan(
        home_country=home,
        extensions={"100": Extension("pkg", account="100000_VoIP")},
        packages={"pkg": Package(route_id=None, deck=RateDeck(lines))},
    )


@pytest.mark.parametrize(
    ("home", "dialled", "call_type"),
    [
        # US tenant
        ("US", "8220000", "L"),  # seven-digit local dialling: possible only as local
        ("US", "822-0000", "L"),
        ("US", "6138220", "L"),  # local form even though 613 looks like an area code
        ("US", "2125550123", "S"),  # NANP: FIXED_LINE_OR_MOBILE, so national, not M
        ("US", "12125550123", "S"),
        ("US", "+1 212 555 0123", "S"),
        ("US", "16138220000", "I"),  # Canada shares +1 but is another country
        ("US", "18005551234", "8"),
        ("US", "19005551234", "9"),
        ("US", "011447400123456", "I"),  # a UK mobile is international from the US
        ("US", "911", "O"),  # emergency: normalising alone would make it 1911
        ("US", "411", "O"),
        ("US", "0", "O"),
        # GB tenant
        ("GB", "447400123456", "M"),  # a UK mobile from the UK
        ("GB", "07400123456", "M"),  # the same, dialled nationally
        ("GB", "+447400123456", "M"),
        ("GB", "00447400123456", "M"),
        ("GB", "02071234567", "S"),
        ("GB", "442071234567", "S"),
        ("GB", "71234567", "L"),  # London number without its 020
        ("GB", "08001234567", "8"),
        ("GB", "09011234567", "9"),
        ("GB", "999", "O"),
        ("GB", "112", "O"),
        ("GB", "0012125550123", "I"),
        # Guernsey: +44 7911 belongs to GG in libphonenumber, so not home-country (docs/rating.md)
        ("GB", "447911123456", "I"),
        # France: mobiles are told apart
        ("FR", "0612345678", "M"),
        ("FR", "0140000000", "S"),
    ],
)
def test_call_type(home: str, dialled: str, call_type: str) -> None:
    rating = rate_call(Call("100", dialled, T0, 60), plan(home), default_package=None)
    assert rating.call_type == call_type


@pytest.mark.parametrize(
    ("dialled", "prefix", "total"),
    [
        ("8220000", "1", "0.02000000"),
        # Without its area code 6138220 is not known to be in Ottawa: only the
        # country-wide line may price it, never 1613.
        ("6138220", "1", "0.02000000"),
        ("2125550123", "1212", "0.01000000"),  # the same area dialled in full matches it
    ],
)
def test_local_form_number_is_priced_on_the_country_wide_line(
    dialled: str, prefix: str, total: str
) -> None:
    rating = rate_call(Call("100", dialled, T0, 60), plan("US"), default_package=None)
    assert (rating.rated, rating.matched_prefix, rating.total) == (True, prefix, D(total))


def test_local_form_number_without_a_country_wide_line_is_unrated() -> None:
    ottawa_only = [RateLine(prefix="1613", rate=D("0.0150"))]
    rating = rate_call(
        Call("100", "6138220", T0, 60), plan("US", ottawa_only), default_package=None
    )
    assert rating.call_type == "L"
    assert (rating.rated, rating.unrated_reason) == (False, "no_rate")


def test_local_form_number_keeps_its_normalised_digits() -> None:
    rating = rate_call(Call("100", "8220000", T0, 60), plan("US"), default_package=None)
    assert rating.number == "18220000"


def test_inbound_from_a_local_form_caller_matches_the_country_wide_inbound_line() -> None:
    rating = rate_call(Call("6138220", "100", T0, 60), plan("US"), default_package=None)
    assert rating.call_type == "IB"
    assert (rating.matched_prefix, rating.total) == ("1", D("0.01000000"))


@pytest.mark.parametrize(
    ("home", "dialled", "expected"),
    [
        ("US", "8220000", "L"),
        ("US", "+8220000", None),  # with + it claims to be international
        ("US", "16138220000", None),
        ("US", "911", "O"),
        ("US", "+911", None),
        ("US", "", None),
        ("GB", "71234567", "L"),
        ("DE", "110", "O"),
    ],
)
def test_dialled_type(home: str, dialled: str, expected: str | None) -> None:
    assert phone.dialled_type(dialled, home) == expected


# Seed 001: `L` is a local call, whether dialled in local form or in full within the area
# of the tenant's own number; `S` is a national call beyond it.
@pytest.mark.parametrize(
    ("home", "caller", "dialled", "call_type"),
    [
        ("US", "12125550100", "2125550199", "L"),  # same area code, dialled in full
        ("US", "12125550100", "+1 212 555 0199", "L"),
        ("US", "12125550100", "3125550199", "S"),  # another area: national
        ("US", "12125550100", "5550199", "L"),  # local form
        ("US", "12125550100", "18005551234", "8"),  # toll free stays 8
        ("US", "12125550100", "16135550100", "I"),
        ("US", "100", "2125550199", "S"),  # an extension has no area: national
        ("GB", "442071234567", "02079460000", "L"),  # London to London
        ("GB", "442071234567", "01614960000", "S"),  # London to Manchester
        ("GB", "442071234567", "07400123456", "M"),  # mobiles have no area
        ("FR", "33140000000", "0145000000", "L"),
        ("FR", "33140000000", "0612345678", "M"),
    ],
)
def test_local_calls_within_the_callers_area(
    home: str, caller: str, dialled: str, call_type: str
) -> None:
    rating = rate_call(Call(caller, dialled, T0, 60), plan(home), default_package="pkg")
    assert rating.call_type == call_type


@pytest.mark.parametrize(
    ("home", "caller", "dialled", "number", "prefix"),
    [
        # From an Ottawa number 8220000 is 613-822-0000: the Ottawa line prices it.
        ("CA", "16135550100", "8220000", "16138220000", "1613"),
        ("GB", "442071234567", "71234568", "442071234568", "44"),
        # 123-4567 can't be a New York number (no exchange starts with 1): country-wide line
        ("US", "12125550100", "1234567", "11234567", "1"),
    ],
)
def test_local_form_number_takes_the_area_of_the_callers_number(
    home: str, caller: str, dialled: str, number: str, prefix: str
) -> None:
    rating = rate_call(Call(caller, dialled, T0, 60), plan(home), default_package="pkg")
    assert (rating.call_type, rating.number, rating.matched_prefix) == ("L", number, prefix)


def test_local_form_caller_takes_the_area_of_the_called_extension() -> None:
    lines = [*DECK, RateLine(prefix="1212", rate=D("0.0400"), direction="inbound")]
    p = TenantPlan(
        home_country="US",
        extensions={"12125550100": Extension("pkg")},
        packages={"pkg": Package(route_id=None, deck=RateDeck(lines))},
    )
    rating = rate_call(Call("5550199", "12125550100", T0, 60), p, default_package=None)
    assert (rating.number, rating.matched_prefix, rating.total) == (
        "12125550199",
        "1212",
        D("0.04000000"),
    )


@pytest.mark.parametrize(
    ("home", "called", "caller", "call_type"),
    [
        ("US", "18005550100", "12125550123", "IS"),  # toll-free inbound
        ("US", "18005550100", "+447400123456", "IM"),  # ... from a mobile
        ("US", "12125550100", "+447400123456", "IB"),
        ("US", "100", "12125550123", "IB"),
        ("GB", "08001234567", "07400123456", "IM"),
        ("GB", "08001234567", "02071234567", "IS"),
    ],
)
def test_inbound_call_types(home: str, called: str, caller: str, call_type: str) -> None:
    p = TenantPlan(
        home_country=home,
        extensions={called: Extension("pkg")},
        packages={"pkg": Package(route_id=None, deck=RateDeck(DECK))},
    )
    rating = rate_call(Call(caller, called, T0, 60), p, default_package=None)
    assert (rating.direction, rating.call_type) == ("inbound", call_type)


def test_call_type_is_set_once_a_package_is_known() -> None:
    no_package = rate_call(Call("555", "+442071234567", T0, 60), plan("US"), default_package=None)
    assert (no_package.unrated_reason, no_package.call_type) == ("no_package", None)
    no_rate = rate_call(Call("100", "+33140000000", T0, 60), plan("US"), default_package=None)
    assert (no_rate.unrated_reason, no_rate.call_type) == ("no_rate", "I")

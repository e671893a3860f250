"""Phone numbers: normalise to E.164 digits and classify into the call types of seed 001.

Everything rating asks of a number comes from one cached `describe`: phonenumbers' region
and type look-ups cost tens of microseconds each (NANP scans two dozen regions), so a number
is read once and its answers kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

# Call-type codes of seed 001 that rating assigns.
INTERNATIONAL = "I"
MOBILE = "M"
LOCAL = "L"
NATIONAL = "S"
TOLL_FREE = "8"
PREMIUM = "9"
OPERATOR = "O"
INBOUND = "IB"
TOLL_FREE_INBOUND = "IS"
TOLL_FREE_INBOUND_MOBILE = "IM"
ON_NET = "2T"

# Number types a local call can reach: NANP reports fixed and mobile numbers as one type.
_GEOGRAPHIC = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_NANP_AREA_DIGITS = 3  # NPA-NXX-XXXX: every NANP area code is three digits

_OPERATOR_NUMBERS = frozenset({"0", "00", "411", "611", "911", "112", "999", "000"})


def digits_only(raw: str) -> str:
    return "".join(ch for ch in raw if ch.isdigit())


@dataclass(frozen=True, slots=True)
class Number:
    """What rating needs to know of one number as dialled, from one tenant's home country."""

    digits: str  # E.164 digits, or the bare digits when phonenumbers cannot read the number
    call_type: str  # the outbound type the number alone decides: O L 8 9 I M S
    kind: int  # phonenumbers' PhoneNumberType; UNKNOWN when not a valid number
    local_only: bool  # dialled in local form, without its area code
    area: str | None  # E.164 digits through the area code of a home-country geographic number


@lru_cache(maxsize=65536)
def describe(raw: str, home_country: str) -> Number:
    """Rule 2 and the seed-001 type of `raw` as dialled from `home_country`.

    A leading `+` or the home country's international prefix (011 in North America, 00 in
    most others) is removed by phonenumbers' parser; a national number gets the home calling
    code; what it cannot parse keeps its digits.
    """
    home = home_country.upper()
    text = raw.strip()
    digits = digits_only(text)
    plus = text.startswith("+")
    if not digits:
        return Number("", OPERATOR, PhoneNumberType.UNKNOWN, False, None)
    try:
        parsed = phonenumbers.parse("+" + digits if plus else digits, home)
    except phonenumbers.NumberParseException:
        unread = _dialled_type(digits, plus, False, home) or classify(digits, home)
        return Number(digits, unread, PhoneNumberType.UNKNOWN, False, None)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    local = not plus and phonenumbers.is_possible_number_with_reason(parsed) == (
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY
    )
    region = phonenumbers.region_code_for_number(parsed)
    kind = phonenumbers.number_type(parsed) if region else PhoneNumberType.UNKNOWN
    dialled = _dialled_type(digits, plus, local, home)
    call_type = dialled or _type_of(kind, region, home)
    area = None
    if region == home and kind in _GEOGRAPHIC:
        code = str(parsed.country_code)
        length = (
            _NANP_AREA_DIGITS
            if code == "1"
            else phonenumbers.length_of_geographical_area_code(parsed)
        )
        if length:
            area = code + phonenumbers.national_significant_number(parsed)[:length]
    return Number(e164, call_type, kind, local, area)


def normalize(raw: str, home_country: str) -> str:
    """Rule 2 of the contract: the number as E.164 digits (see `describe`)."""
    return describe(raw, home_country).digits


def local_only(raw: str, home_country: str) -> bool:
    """Whether `raw`, as dialled, is a local-form number of the home country: one that is
    possible only without its area code (seven-digit NANP dialling such as `8220000`).

    Judged before normalisation, since normalising prepends the calling code and hides it.
    """
    return describe(raw, home_country).local_only


def _dialled_type(digits: str, plus: bool, local: bool, home: str) -> str | None:
    if not plus and (digits in _OPERATOR_NUMBERS or phonenumbers.is_emergency_number(digits, home)):
        return OPERATOR
    return LOCAL if local else None


def dialled_type(raw: str, home_country: str) -> str | None:
    """The call type that the number as dialled decides, before normalisation hides it:
    `O` for operator and emergency short codes (`911` would otherwise become `1911`),
    `L` for a local-form number; None when the normalised number decides (`classify`)."""
    digits = digits_only(raw)
    if not digits:
        return None
    plus = raw.strip().startswith("+")
    return _dialled_type(digits, plus, local_only(raw, home_country), home_country.upper())


@lru_cache(maxsize=512)
def calling_code(home_country: str) -> str:
    """The home country's calling code as digits (`1` for US, `44` for GB)."""
    return str(phonenumbers.country_code_for_region(home_country.upper()))


def area(e164_digits: str, home_country: str) -> str | None:
    """The E.164 digits up to the end of the area code (`1613`, `4420`) of a valid geographic
    home-country number; None for anything else (extensions, mobiles, other countries)."""
    return describe("+" + e164_digits, home_country).area if e164_digits else None


def complete_local(raw: str, home_country: str, other_area: str | None) -> str | None:
    """A local-form number completed with the other party's area code (`8220000` called from
    +1 613 555 0000 is `16138220000`); None when that area is unknown or the result is not a
    valid number of that area, so the caller matches the country-wide line instead."""
    if other_area is None:
        return None
    full = other_area + digits_only(raw)
    return full if area(full, home_country) == other_area else None


def outbound_type(dialled: Number, caller_area: str | None) -> str:
    """The seed-001 type of an outbound call: `O` and local-form `L` from the number as
    dialled, else from the normalised number, `S` becoming `L` within the caller's area."""
    kind = dialled.call_type
    if kind == NATIONAL and caller_area is not None and dialled.area == caller_area:
        return LOCAL
    return kind


def inbound_type(called: Number, caller: Number) -> str:
    """`IS` for a call to a toll-free number of the tenant (`IM` when the caller is a mobile),
    else `IB`."""
    if called.kind != PhoneNumberType.TOLL_FREE:
        return INBOUND
    if caller.kind == PhoneNumberType.MOBILE:
        return TOLL_FREE_INBOUND_MOBILE
    return TOLL_FREE_INBOUND


def _type_of(kind: int, region: str | None, home: str) -> str:
    if kind == PhoneNumberType.TOLL_FREE:
        return TOLL_FREE
    if kind == PhoneNumberType.PREMIUM_RATE:
        return PREMIUM
    if region and region != home:
        return INTERNATIONAL
    if kind == PhoneNumberType.MOBILE:
        return MOBILE
    return NATIONAL


@lru_cache(maxsize=65536)
def classify(e164_digits: str, home_country: str) -> str:
    """The seed-001 call type of an outbound call to `e164_digits` from `home_country`.

    `M` only where phonenumbers can tell a mobile from a fixed line: NANP numbers are
    FIXED_LINE_OR_MOBILE (mobiles share area codes there), so a US call to one is `S`.
    Operator and local-form numbers (`O`, `L`) are decided on the number as dialled, by
    `dialled_type`.
    """
    if not e164_digits or e164_digits in _OPERATOR_NUMBERS:
        return OPERATOR
    try:
        parsed = phonenumbers.parse("+" + e164_digits, None)
    except phonenumbers.NumberParseException:
        return NATIONAL
    region = phonenumbers.region_code_for_number(parsed)
    return _type_of(phonenumbers.number_type(parsed), region, home_country.upper())

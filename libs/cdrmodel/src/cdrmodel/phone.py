"""Phone numbers: normalise to E.164 digits and classify into the call types of seed 001."""

from __future__ import annotations

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

_OPERATOR_NUMBERS = frozenset({"0", "00", "411", "611", "911", "112", "999", "000"})


def digits_only(raw: str) -> str:
    return "".join(ch for ch in raw if ch.isdigit())


@lru_cache(maxsize=65536)
def normalize(raw: str, home_country: str) -> str:
    """Rule 2 of the contract: digits only, read as E.164, national numbers get the home code.

    A leading `+` or the home country's international prefix (011 in North America, 00 in
    most others) is removed by phonenumbers' parser; what it cannot parse keeps its digits.
    """
    text = raw.strip()
    digits = digits_only(text)
    if not digits:
        return ""
    candidate = "+" + digits if text.startswith("+") else digits
    try:
        parsed = phonenumbers.parse(candidate, home_country.upper())
    except phonenumbers.NumberParseException:
        return digits
    if parsed.country_code is None or parsed.national_number is None:
        return digits
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


@lru_cache(maxsize=65536)
def local_only(raw: str, home_country: str) -> bool:
    """Whether `raw`, as dialled, is a local-form number of the home country: one that is
    possible only without its area code (seven-digit NANP dialling such as `8220000`).

    Judged before normalisation, since normalising prepends the calling code and hides it.
    """
    text = raw.strip()
    if text.startswith("+"):
        return False
    digits = digits_only(text)
    if not digits:
        return False
    try:
        parsed = phonenumbers.parse(digits, home_country.upper())
    except phonenumbers.NumberParseException:
        return False
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY)


@lru_cache(maxsize=65536)
def dialled_type(raw: str, home_country: str) -> str | None:
    """The call type that the number as dialled decides, before normalisation hides it:
    `O` for operator and emergency short codes (`911` would otherwise become `1911`),
    `L` for a local-form number; None when the normalised number decides (`classify`)."""
    digits = digits_only(raw)
    if not raw.strip().startswith("+") and digits:
        if digits in _OPERATOR_NUMBERS or phonenumbers.is_emergency_number(
            digits, home_country.upper()
        ):
            return OPERATOR
    if local_only(raw, home_country):
        return LOCAL
    return None


@lru_cache(maxsize=512)
def calling_code(home_country: str) -> str:
    """The home country's calling code as digits (`1` for US, `44` for GB)."""
    return str(phonenumbers.country_code_for_region(home_country.upper()))


@lru_cache(maxsize=65536)
def _parsed(e164_digits: str) -> phonenumbers.PhoneNumber | None:
    """A valid E.164 number as phonenumbers reads it, or None (parsed once per number)."""
    try:
        parsed = phonenumbers.parse("+" + e164_digits, None)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


@lru_cache(maxsize=65536)
def area(e164_digits: str, home_country: str) -> str | None:
    """The E.164 digits up to the end of the area code (`1613`, `4420`) of a valid geographic
    home-country number; None for anything else (extensions, mobiles, other countries)."""
    parsed = _parsed(e164_digits) if e164_digits else None
    if parsed is None or phonenumbers.region_code_for_number(parsed) != home_country.upper():
        return None
    if phonenumbers.number_type(parsed) not in _GEOGRAPHIC:
        return None
    length = phonenumbers.length_of_geographical_area_code(parsed)
    if length == 0:
        return None
    national = phonenumbers.national_significant_number(parsed)
    return str(parsed.country_code) + national[:length]


@lru_cache(maxsize=65536)
def complete_local(raw: str, home_country: str, other_area: str | None) -> str | None:
    """A local-form number completed with the other party's area code (`8220000` called from
    +1 613 555 0000 is `16138220000`); None when that area is unknown or the result is not a
    valid number of that area, so the caller matches the country-wide line instead."""
    if other_area is None:
        return None
    full = other_area + digits_only(raw)
    return full if area(full, home_country) == other_area else None


def outbound_type(dialled: str, number: str, caller_area: str | None, home_country: str) -> str:
    """The seed-001 type of an outbound call: `O` and local-form `L` from the number as
    dialled, else from the normalised number, `S` becoming `L` within the caller's area."""
    kind = dialled_type(dialled, home_country) or classify(number, home_country)
    if kind == NATIONAL and caller_area is not None and area(number, home_country) == caller_area:
        return LOCAL
    return kind


@lru_cache(maxsize=65536)
def inbound_type(called: str, caller: str, home_country: str) -> str:
    """`IS` for a call to a toll-free number of the tenant (`IM` when the caller is a mobile),
    else `IB`. Both normalised."""
    parsed = _parsed(called) if called else None
    if parsed is None or phonenumbers.number_type(parsed) != PhoneNumberType.TOLL_FREE:
        return INBOUND
    from_ = _parsed(caller) if caller else None
    if from_ is not None and phonenumbers.number_type(from_) == PhoneNumberType.MOBILE:
        return TOLL_FREE_INBOUND_MOBILE
    return TOLL_FREE_INBOUND


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
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.TOLL_FREE:
        return TOLL_FREE
    if kind == PhoneNumberType.PREMIUM_RATE:
        return PREMIUM
    if region and region != home_country.upper():
        return INTERNATIONAL
    if kind == PhoneNumberType.MOBILE:
        return MOBILE
    return NATIONAL

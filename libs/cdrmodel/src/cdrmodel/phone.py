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
ON_NET = "2T"

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


def calling_code(home_country: str) -> str:
    """The home country's calling code as digits (`1` for US, `44` for GB)."""
    return str(phonenumbers.country_code_for_region(home_country.upper()))


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

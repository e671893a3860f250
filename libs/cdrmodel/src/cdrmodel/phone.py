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
def classify(e164_digits: str, home_country: str) -> str:
    """The seed-001 call type of an outbound call to `e164_digits` from `home_country`."""
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

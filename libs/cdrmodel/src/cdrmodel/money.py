"""Money helpers: exact decimals, half-up to 8 places, minor units per currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.numbers import get_currency_precision, is_currency

EIGHT_PLACES = Decimal("0.00000001")
# NUMERIC(20, 8): every stored amount is below this in absolute value.
AMOUNT_LIMIT = Decimal(10) ** 12
ZERO = Decimal(0)


def round8(value: Decimal) -> Decimal:
    """Round half-up to the 8 places every stored amount carries."""
    return value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP)


def fmt8(value: Decimal | None) -> str | None:
    """An amount as the contract's decimal string (fixed point, exactly 8 places), or None.

    `str()` of a Decimal switches to exponent notation for small values (`0E-8`, `1E-7`),
    which CRMs and spreadsheets misread; `format(..., "f")` never does. A zero that rounded
    from a tiny negative prints without its sign.
    """
    if value is None:
        return None
    rounded = round8(value)
    if not rounded:
        rounded = rounded.copy_abs()
    return format(rounded, "f")


def known_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 currency code known to CLDR (babel's data)."""
    return len(code) == 3 and code.isalpha() and code.isupper() and is_currency(code)


@lru_cache(maxsize=512)
def currency_exponent(currency: str) -> int:
    """Digits after the point of the currency's minor unit (USD 2, JPY 0, KWD 3).

    From CLDR's currency data as babel ships it, not a hand list. An unknown code gets 2,
    the exponent of most currencies (and CLDR's default): the admin API refuses unknown
    codes, so only rows written before that check can reach here, and pushing them with
    cents beats failing the push.
    """
    return int(get_currency_precision(currency.upper()))


def minor_units(value: Decimal, currency: str) -> int:
    """The amount in the currency's minor unit (cents for USD), rounded half-up."""
    exponent = currency_exponent(currency)
    return int((value.scaleb(exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def storable(value: Decimal) -> bool:
    """Fits NUMERIC(20, 8) without losing a digit: below 10^12, at most 8 decimal places."""
    exponent = value.as_tuple().exponent
    return (
        value.is_finite()
        and abs(value) < AMOUNT_LIMIT
        and isinstance(exponent, int)
        and (exponent >= -8 or value == value.quantize(EIGHT_PLACES))
    )

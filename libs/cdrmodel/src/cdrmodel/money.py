"""Money helpers: exact decimals, half-up to 8 places, minor units per currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

EIGHT_PLACES = Decimal("0.00000001")
ZERO = Decimal(0)

# ISO 4217 minor-unit exponents that differ from the usual 2.
_MINOR_EXPONENT = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def round8(value: Decimal) -> Decimal:
    """Round half-up to the 8 places every stored amount carries."""
    return value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP)


def fmt8(value: Decimal | None) -> str | None:
    """An amount as the contract's decimal string (always 8 places), or None."""
    return None if value is None else str(round8(value))


def minor_units(value: Decimal, currency: str) -> int:
    """The amount in the currency's minor unit (cents for USD), rounded half-up."""
    exponent = _MINOR_EXPONENT.get(currency.upper(), 2)
    return int((value * (Decimal(10) ** exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))

"""How a price came about, as JSON: the description `/explain` and `/v1/rate/quote` answer.

Built from the `Rating` that `pricing.rate_call` returned (it carries the lines that priced the
call) and stored with the price in `cdr.pricing`, so a record explains itself after its deck
was replaced. Pure: no I/O, JSON-native values only (money as 8-place strings).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from cdr_rater.pricing import INBOUND, Call, RateLine, Rating, billed_seconds
from cdrmodel import phone
from cdrmodel.money import fmt8, round8

# Bumped when the shape below changes, so readers can tell old stored descriptions apart.
VERSION = 1
FORMULA = "connect_fee + rate * billed / 60"


def _amount(value: Decimal) -> str:
    """Money as 8-place strings; a deck value with more places is shown whole, so that the
    arithmetic printed is the arithmetic done."""
    return str(fmt8(value)) if round8(value) == value else format(value, "f")


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _package_reason(rating: Rating) -> str:
    """Rule 1: the extension's package, else the API account's default, else none."""
    if rating.extension is not None:
        return "extension"
    return "default_package" if rating.package_id is not None else "none"


def _free_because(rating: Rating) -> str | None:
    if rating.call_type == phone.ON_NET:
        return "on_net"
    if rating.rated and rating.direction == INBOUND and rating.line is None:
        return "no_inbound_line"
    return None


def _line(line: RateLine) -> dict[str, Any]:
    return {
        "prefix": line.prefix,
        "destination": line.destination or None,
        "direction": line.direction,
        "rate": _amount(line.rate),
        "connect_fee": _amount(line.connect_fee),
        "initial_increment": line.first_increment,
        "increment": line.increment,
        "effective_from": _when(line.effective_from),
        "effective_to": _when(line.effective_to),
        "time_band": line.time_band.text if line.time_band is not None else None,
    }


def _increments(line: RateLine, call: Call, billed: int) -> dict[str, Any]:
    """Rule 4, step by step: which branch applied and how many further increments."""
    duration, first = call.duration, line.first_increment
    step = line.increment if line.increment > 0 else 1  # as pricing.billed_seconds reads it
    further = 0
    if billed == 0:
        rule = f"{call.disposition}, {duration} s: nothing billed"
    elif duration <= first:
        rule = f"{duration} s <= initial {first} s: billed {first} s"
    else:
        further = (billed - first) // step
        rule = f"{first} + ceil(({duration} - {first}) / {step}) * {step} = {billed} s"
    return {
        "duration": duration,
        "answered": call.disposition == "ANSWERED",
        "initial_increment": first,
        "increment": line.increment,
        "further_increments": further,
        "billed_seconds": billed,
        "rule": rule,
    }


def _priced(line: RateLine | None, call: Call, amount: Decimal | None) -> dict[str, Any] | None:
    """One side (the price from the sell deck, or the cost from the termination deck): the line, the increments, the arithmetic and its result."""
    if line is None or amount is None:
        return None
    billed = billed_seconds(call.duration, call.disposition == "ANSWERED", line)
    total = fmt8(amount)
    if billed == 0:
        arithmetic = f"billed 0 s: {total}"
    else:
        fee, rate = _amount(line.connect_fee), _amount(line.rate)
        arithmetic = f"{fee} + {rate} * {billed} / 60 = {total}"
    return {
        "line": _line(line),
        "increments": _increments(line, call, billed),
        "formula": FORMULA,
        "arithmetic": arithmetic,
        "rounding": "half-up to 8 places",
        "total": total,
    }


def describe(call: Call, rating: Rating) -> dict[str, Any]:
    """The JSON description of how `rating` priced `call` (or why it could not)."""
    margin = None
    if rating.total is not None and rating.cost is not None:
        margin = fmt8(rating.total - rating.cost)
    return {
        "version": VERSION,
        "rated": rating.rated,
        "unrated_reason": rating.unrated_reason,
        "call": {
            "originating_number": call.originating,
            "destination_number": call.destination,
            "start_time": _when(call.start_time),
            "duration": call.duration,
            "disposition": call.disposition,
        },
        "direction": rating.direction,
        "package": {
            "id": rating.package_id,
            "why": _package_reason(rating),
            "extension": rating.extension,
            "route": rating.route_id,
        },
        "normalized_number": rating.number or None,
        "matched_prefix": rating.matched_prefix,
        "destination_name": rating.destination_name,
        "call_type": rating.call_type,
        "call_billing": rating.call_billing,
        "free_because": _free_because(rating),
        "billed_seconds": rating.billed_seconds,
        "rate": fmt8(rating.rate),
        "total": fmt8(rating.total),
        "cost": fmt8(rating.cost),
        "margin": margin,
        "sell": _priced(rating.line, call, rating.total),
        "termination": _priced(rating.cost_line, call, rating.cost),
    }

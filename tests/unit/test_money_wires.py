"""Every push format carries the stored record's money as fixed-point strings and minor units."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from cdr_notifier.formats import encode
from cdrmodel.record import render_record
from tests.helpers import decode_push

D = Decimal


def row(**money: Any) -> dict[str, Any]:
    """A `cdr` row as the database hands it back (NUMERIC(20,8) keeps the scale)."""
    return {
        "cdr_id": uuid.UUID("01890000-0000-7000-8000-000000000001"),
        "database_id": "DB1",
        "api_account": "ACC",
        "originating_number": "100",
        "destination_number": "16138220000",
        "start_time": datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
        "duration": 90,
        "disposition": "ANSWERED",
        "rated": True,
        "call_type": "I",
        "currency": "USD",
        **money,
    }


# (case, row money, expected rate / total / cost strings, expected price in minor units)
CASES = [
    (
        "busy call, zero priced",
        {"disposition": "BUSY", "rate": D("0.0150"), "total": D("0E-8"), "cost": D("0E-8")},
        ("0.01500000", "0.00000000", "0.00000000"),
        0,
    ),
    (
        "one hundred-millionth",
        {"rate": D("6E-7"), "total": D("1E-8"), "cost": None},
        ("0.00000060", "0.00000001", None),
        0,
    ),
    (
        "a 12-digit amount",
        {"rate": D("1E+11"), "total": D("123456789012.34567890"), "cost": D("1E-8")},
        ("100000000000.00000000", "123456789012.34567890", "0.00000001"),
        12345678901235,
    ),
    (
        "a credit: negative amount, negative margin",
        {"rate": D("-0.0200"), "total": D("-0.03000000"), "cost": D("0.00780000")},
        ("-0.02000000", "-0.03000000", "0.00780000"),
        -3,
    ),
    (
        "yen: no minor unit",
        {"currency": "JPY", "rate": D("3"), "total": D("4.50000000"), "cost": D("1.2E+2")},
        ("3.00000000", "4.50000000", "120.00000000"),
        5,
    ),
    (
        "dinar: three places",
        {"currency": "KWD", "rate": D("0.0100"), "total": D("1.23450000"), "cost": None},
        ("0.01000000", "1.23450000", None),
        1235,
    ),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("_case", "money", "strings", "price"), CASES, ids=IDS)
def test_render_record_money(
    _case: str, money: dict[str, Any], strings: tuple[str | None, ...], price: int
) -> None:
    record = render_record(row(**money))
    assert (record["rate"], record["total"], record["cost"]) == strings
    assert record["price"] == price and isinstance(record["price"], int)


@pytest.mark.parametrize("fmt", ["json", "form", "xmlrpc"])
@pytest.mark.parametrize(("_case", "money", "strings", "price"), CASES, ids=IDS)
def test_each_push_format_carries_fixed_point_money(
    fmt: str, _case: str, money: dict[str, Any], strings: tuple[str | None, ...], price: int
) -> None:
    body, _content_type = encode(fmt, render_record(row(**money)), xmlrpc_method="cdr.notify")
    assert b"E-" not in body and b"E+" not in body
    fields = decode_push(fmt, body)
    rate, total, cost = strings
    assert fields["rate"] == rate and fields["total"] == total
    # form flattens None to ""; JSON and XML-RPC (allow_none) keep null / nil.
    assert fields["cost"] == ("" if cost is None and fmt == "form" else cost)
    if fmt == "form":
        assert fields["price"] == str(price)
    elif fmt == "xmlrpc" and not -(2**31) <= price < 2**31:
        assert fields["price"] == str(price)  # XML-RPC's <int> is 32-bit
    else:
        assert fields["price"] == price

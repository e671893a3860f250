"""Rate decks from CSV (with a header) or a JSON list; every bad line is named, nothing kept."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cdr_rater import bands
from cdrmodel.errors import Unprocessable
from cdrmodel.money import storable

COLUMNS = (
    "prefix",
    "rate",
    "destination",
    "increment",
    "initial_increment",
    "connect_fee",
    "effective_from",
    "effective_to",
    "direction",
    "time_band",
)
_MAX_ERRORS = 20


def _decimal(value: Any, name: str) -> Decimal:
    try:
        out = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not out.is_finite() or out < 0:
        raise ValueError(f"{name} must be a non-negative number")
    if not storable(out):  # money: NUMERIC(20, 8), nothing silently rounded away
        raise ValueError(f"{name} must be below 10^12 with at most 8 decimal places")
    return out


def _int(value: Any, name: str, *, minimum: int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}")
    return int(text)


def _when(value: Any, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an ISO 8601 date/time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _band(value: Any) -> str | None:
    """The band's canonical spelling, None for `default` or none; ValueError when unreadable."""
    band = bands.parse(None if value is None else str(value))
    return band.text if band is not None else None


def parse_line(raw: dict[str, Any]) -> dict[str, Any]:
    """One deck line as rate_line columns; raises ValueError with a readable message."""
    data = {str(k).strip().lower(): v for k, v in raw.items() if k is not None}
    unknown = set(data) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(sorted(unknown))}")
    present = {k: v for k, v in data.items() if v is not None and str(v).strip() != ""}
    prefix = "".join(ch for ch in str(present.get("prefix", "")) if ch.isdigit())
    if not prefix:
        raise ValueError("prefix missing or without digits")
    if "rate" not in present:
        raise ValueError("rate missing")
    increment = _int(present.get("increment", 60), "increment", minimum=1)
    line = {
        "prefix": prefix,
        "rate": _decimal(present["rate"], "rate"),
        "destination": str(present.get("destination", "")).strip(),
        "increment": increment,
        "initial_increment": (
            _int(present["initial_increment"], "initial_increment", minimum=0)
            if "initial_increment" in present
            else None
        ),
        "connect_fee": _decimal(present.get("connect_fee", 0), "connect_fee"),
        "effective_from": (
            _when(present["effective_from"], "effective_from")
            if "effective_from" in present
            else None
        ),
        "effective_to": (
            _when(present["effective_to"], "effective_to") if "effective_to" in present else None
        ),
        "direction": str(present.get("direction", "outbound")).strip().lower(),
        "time_band": _band(present.get("time_band")),
    }
    if line["direction"] not in ("outbound", "inbound"):
        raise ValueError("direction must be outbound or inbound")
    start, end = line["effective_from"], line["effective_to"]
    if isinstance(start, datetime) and isinstance(end, datetime) and end <= start:
        raise ValueError("effective_to must be after effective_from")
    return line


def parse_deck(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """All lines, or Unprocessable naming each bad line (1-based; the CSV header is line 1)."""
    rows: list[tuple[int, dict[str, Any]]]
    if "json" in content_type or body.lstrip()[:1] in (b"[", b"{"):
        try:  # decimals stay exact: no float ever holds a rate
            data = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unprocessable(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise Unprocessable("a JSON deck is a list of objects")
        rows = [(i + 1, item) for i, item in enumerate(data)]
        where = "item"
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Unprocessable("CSV deck must be UTF-8") from None
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        try:  # the csv module raises csv.Error on input it cannot split (a bare CR, NUL)
            if not reader.fieldnames or "prefix" not in [
                f.strip().lower() for f in reader.fieldnames
            ]:
                raise Unprocessable("line 1: CSV header must name at least prefix and rate")
            for row in reader:
                if None in row:
                    raise Unprocessable(f"line {reader.line_num}: more fields than the header")
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            raise Unprocessable(
                f"line {reader.line_num or 1}: not readable as CSV: {exc}"
            ) from None
        where = "line"
    lines, errors = [], []
    for number, raw in rows:
        try:
            lines.append(parse_line(raw))
        except ValueError as exc:
            errors.append(f"{where} {number}: {exc}")
            if len(errors) >= _MAX_ERRORS:
                break
    if errors:
        raise Unprocessable(errors[0], detail=errors)
    return lines

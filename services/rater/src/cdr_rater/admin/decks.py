"""Rate decks from CSV (with a header) or a JSON list, validated as money before anything is
stored: every bad line is named with its reason, and a deck with one bad line keeps nothing.

Pure and synchronous on purpose: the admin route runs `prepare_deck` in a worker process (see
`parse_pool`), so the second or two of CPU a 100,000-line upload costs is spent neither on the
event loop nor under the GIL of the process whose consumer is rating calls. What comes back is
the deck as CSV for PostgreSQL's COPY, which the parent streams in without touching a line.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from cdr_rater import bands
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
MAX_LISTED_ERRORS = 100  # a deck with a wrong column can have 100,000 bad lines: list a few
MAX_INCREMENT = 86400  # seconds: a day; beyond that a "per minute" rate means nothing
MAX_PREFIX_DIGITS = 20  # E.164 numbers have at most 15 digits; room for national prefixes
MAX_TEXT = 200
# A date before 1900 or after 9998 is a typo, and near the ends of the calendar a tenant
# offset pushes it out of what datetime and PostgreSQL hold.
EARLIEST, LATEST = 1900, 9998


class DeckLine(NamedTuple):
    """One line as the rate_line columns it fills (the order COPY writes them in)."""

    prefix: str
    destination: str
    rate: Decimal
    increment: int
    initial_increment: int | None
    connect_fee: Decimal
    effective_from: datetime | None
    effective_to: datetime | None
    direction: str
    time_band: str | None


class BadDeck(Exception):
    """The deck is refused (a 422): `message` for a person, `detail` lists the bad lines.

    Both travel as positional args, so the exception survives pickling back from a worker."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message, detail)
        self.message, self.detail = message, detail


class BadLine(ValueError):
    """A reason a deck line is refused; the line number is added by `parse_deck`."""


def _text(value: Any, name: str) -> str:
    # JSON decks may carry numbers where CSV has text (a prefix of 1418); anything else
    # (an object, a list, true) is a mistake, not something to stringify.
    if type(value) is str:  # the fast path: every CSV field is one
        text = value.strip()
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        text = str(value)
    else:
        raise BadLine(f"{name} must be text or a number")
    if len(text) > MAX_TEXT:
        raise BadLine(f"{name} is longer than {MAX_TEXT} characters")
    if not text.isprintable():  # NUL cannot be stored; control characters break exports
        raise BadLine(f"{name} must not contain control characters")
    return text


def _money(value: Any, name: str) -> Decimal:
    text = _text(value, name)
    try:
        out = Decimal(text)
    except InvalidOperation:
        raise BadLine(f"{name} {text!r} is not a decimal number") from None
    if not out.is_finite() or out < 0:
        raise BadLine(f"{name} must be a non-negative number")
    if not storable(out):  # money: NUMERIC(20, 8), nothing silently rounded away
        raise BadLine(f"{name} must be below 10^12 with at most 8 decimal places")
    return out


def _seconds(value: Any, name: str, *, minimum: int) -> int:
    text = _text(value, name)
    if not text.isdigit() or not text.isascii() or not minimum <= int(text) <= MAX_INCREMENT:
        raise BadLine(f"{name} must be a whole number of seconds, {minimum} to {MAX_INCREMENT}")
    return int(text)


def _when(value: Any, name: str, zone: tzinfo) -> datetime:
    text = _text(value, name)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadLine(f"{name} {text!r} is not an ISO 8601 date/time") from None
    if not EARLIEST <= parsed.year <= LATEST:
        raise BadLine(f"{name} must be between {EARLIEST} and {LATEST}")
    # Without an offset, a time is the tenant's local time, like every other local time
    # (fold 0: an hour repeated by a DST change is read as its first occurrence).
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _prefix(value: Any) -> str:
    text = _text(value, "prefix")
    digits = text[1:] if text.startswith("+") else text
    if not digits:
        raise BadLine("prefix missing")
    if not (digits.isdigit() and digits.isascii()):
        raise BadLine(f"prefix {text!r} must be digits only (a leading + is allowed)")
    if len(digits) > MAX_PREFIX_DIGITS:
        raise BadLine(f"prefix must have at most {MAX_PREFIX_DIGITS} digits")
    return digits


def _time_band(value: Any) -> str | None:
    """The band's canonical spelling (`bands.parse`), None for `default`; BadLine when the
    band cannot be read, so it is refused at upload, never met unreadable while rating."""
    try:
        band = bands.parse(_text(value, "time_band"))
    except ValueError as exc:
        raise BadLine(str(exc)) from None
    return band.text if band is not None else None


def parse_line(raw: dict[str, Any], zone: tzinfo) -> DeckLine:
    """One deck line; raises BadLine with a readable reason."""
    present: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip().lower()
        if name not in COLUMNS:
            raise BadLine(f"unknown column {name!r}")
        if value is not None and not (isinstance(value, str) and not value.strip()):
            present[name] = value
    if "prefix" not in present:
        raise BadLine("prefix missing")
    if "rate" not in present:
        raise BadLine("rate missing")
    get = present.get
    direction = _text(get("direction", "outbound"), "direction").lower()
    if direction not in ("outbound", "inbound"):
        raise BadLine(f"direction {direction!r} must be outbound or inbound")
    start = (
        _when(get("effective_from"), "effective_from", zone)
        if "effective_from" in present
        else None
    )
    end = _when(get("effective_to"), "effective_to", zone) if "effective_to" in present else None
    if start is not None and end is not None and end <= start:
        raise BadLine("effective_to must be after effective_from")
    return DeckLine(
        prefix=_prefix(present["prefix"]),
        destination=_text(get("destination", ""), "destination"),
        rate=_money(present["rate"], "rate"),
        increment=_seconds(get("increment", 60), "increment", minimum=1),
        initial_increment=(
            _seconds(present["initial_increment"], "initial_increment", minimum=0)
            if "initial_increment" in present
            else None
        ),
        connect_fee=_money(get("connect_fee", 0), "connect_fee"),
        effective_from=start,
        effective_to=end,
        direction=direction,
        time_band=_time_band(present["time_band"]) if "time_band" in present else None,
    )


# A row's fields by column name, or why the row cannot be read at all (numbered: line 1 is
# the CSV header; a JSON deck's items count from 1).
Rows = list[tuple[int, "dict[str, Any] | BadLine"]]


def _json_rows(body: bytes) -> Rows:
    try:  # decimals stay exact: no float ever holds a rate
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadDeck(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise BadDeck("a JSON deck is a list of objects")
    return [(i + 1, item) for i, item in enumerate(data)]


def _csv_rows(body: bytes) -> Rows:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadDeck("CSV deck must be UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    rows: Rows = []
    try:  # the csv module raises csv.Error on input it cannot split (a bare CR, NUL)
        header = [h.strip().lower() for h in next(reader, [])]
        if "prefix" not in header or "rate" not in header:
            raise BadDeck("line 1: CSV header must name at least prefix and rate")
        width = len(header)
        for row in reader:
            if not row:
                continue  # a blank line, usually the last one
            fields: dict[str, Any] | BadLine = (
                BadLine("more fields than the header")
                if len(row) > width
                else dict(zip(header, row, strict=False))
            )
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise BadDeck(f"line {reader.line_num or 1}: not readable as CSV: {exc}") from None
    return rows


def parse_deck(body: bytes, content_type: str, zone: tzinfo) -> list[DeckLine]:
    """All lines, or BadDeck naming the bad ones (1-based; the CSV header is line 1,
    a JSON deck's items count from 1). `zone` reads dates given without an offset."""
    is_json = "json" in content_type or body.lstrip()[:1] in (b"[", b"{")
    rows = _json_rows(body) if is_json else _csv_rows(body)
    where = "item" if is_json else "line"
    lines: list[DeckLine] = []
    errors: list[dict[str, Any]] = []
    bad = 0
    seen: dict[tuple[Any, ...], int] = {}
    for number, raw in rows:
        try:
            if isinstance(raw, BadLine):
                raise raw
            line = parse_line(raw, zone)
            # Two lines that rule 3 cannot choose between (same prefix, direction, start
            # and band) would price by accident of storage order: refuse the second.
            key = (line.prefix, line.direction, line.effective_from, line.time_band)
            first = seen.setdefault(key, number)
            if first != number:
                raise BadLine(
                    f"same prefix, direction, effective_from and time_band as {where} {first}"
                )
            lines.append(line)
        except BadLine as exc:
            bad += 1
            if len(errors) < MAX_LISTED_ERRORS:
                errors.append({"line": number, "reason": str(exc)})
    if bad:
        first_error = f"{where} {errors[0]['line']}: {errors[0]['reason']}"
        more = f" ({bad} bad {where}s in all)" if bad > 1 else ""
        raise BadDeck(
            first_error + more, detail={"bad": bad, "listed": len(errors), "errors": errors}
        )
    return lines


# The deck's keys, then its lines: what `copy_csv` writes and the COPY into rate_line reads.
COPY_COLUMNS = ("database_id", "deck_kind", "deck_id", *DeckLine._fields)


def copy_csv(lines: list[DeckLine], keys: tuple[str, str, str]) -> bytes:
    """The lines, each after the deck's `keys` (database_id, deck_kind, deck_id), as CSV for
    `COPY ... (FORMAT csv)`: an empty unquoted field is NULL (destination is read with
    FORCE_NOT_NULL, so an empty one stays '')."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for line in lines:
        writer.writerow(
            (
                *keys,
                line.prefix,
                line.destination,
                format(line.rate, "f"),
                line.increment,
                "" if line.initial_increment is None else line.initial_increment,
                format(line.connect_fee, "f"),
                "" if line.effective_from is None else line.effective_from.isoformat(),
                "" if line.effective_to is None else line.effective_to.isoformat(),
                line.direction,
                "" if line.time_band is None else line.time_band,
            )
        )
    return out.getvalue().encode()


def prepare_deck(
    body: bytes, content_type: str, zone: str, keys: tuple[str, str, str]
) -> tuple[int, bytes]:
    """What a worker process does with an upload: the line count and the COPY payload, or
    BadDeck. `zone` is an IANA name (a ZoneInfo is rebuilt here rather than pickled)."""
    lines = parse_deck(body, content_type, ZoneInfo(zone))
    return len(lines), copy_csv(lines, keys)

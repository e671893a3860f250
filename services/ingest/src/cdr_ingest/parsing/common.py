"""What every body parser hands back per record, the body-level errors, and shared field rules.

A parser turns a request body into one `Parsed` or `Refused` per record, in order. `Parsed`
carries a ready `CdrSubmitted`; `Refused` carries the contract code (504xx) and a message.
A body that cannot be taken at all raises a `CdrError` subclass the route renders.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cdr_ingest.service import (
    ACCOUNT_CODE_INVALID,
    ACCOUNT_CODE_LIMIT,
    EXTERNAL_ID_INVALID,
    Rejected,
    bounded,
    parse_whole,
    raw_start_time,
)
from cdrmodel.errors import CdrError
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.principals import Principal
from cdrmodel.timeutil import aware

MAX_RECORDS = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024
# Far below a broker's default largest record (1 MB) with every other field at its limit.
MAX_EXTRA_BYTES = 64 * 1024

# Codes beyond the contract's table (it names 50411-50416 for the seed-000 fields); each
# names one field or one kind of unreadable record, listed in docs/ingest.md.
NOT_AN_OBJECT = 50400
RING_SECONDS_INVALID = 50417
DISPOSITION_INVALID = 50418
DIRECTION_INVALID = 50419
EXTRA_INVALID = 50420
MALFORMED_RECORD = 50460
NOT_BILLED_B_LEG = 50462

# Ids a PBX assigns (FreeSWITCH uuids, Asterisk uniqueids, seed-003 ivruniqueids) are longer
# than seed 000's 15-character ExternalID; refusing every FreeSWITCH call would help nobody.
PBX_ID_LIMIT = 64
DIRECTIONS = ("inbound", "outbound")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A record to produce. `dedupe_key`, when set, is the record's identity for 50421
    instead of the contract's rule (ExternalID, or the number/time/duration tuple when
    `start_given`)."""

    event: CdrSubmitted
    dedupe_key: str | None = None
    # Whether the record carried a start time: the contract's natural key applies only then
    # (a start made up from the arrival time never repeats).
    start_given: bool = True

    @property
    def code(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class Refused:
    """A record not taken: its contract code and a message for the PBX's operator."""

    code: int
    message: str


ParseResult = Parsed | Refused


class BodyTooLarge(CdrError):
    """Over 10 MiB or 10,000 records: the route answers 413 with this message."""

    status_code = 413


class BodyUnreadable(CdrError):
    """Not JSON (or not the format the path takes) at all: 400, nothing taken."""

    status_code = 400


class BadTimezone(CdrError):
    status_code = 422


def check_body_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(
            f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes (10 MiB)"
        )


def check_record_count(count: int) -> None:
    if count > MAX_RECORDS:
        raise BodyTooLarge(f"body holds {count} records; the limit is {MAX_RECORDS:,} a request")


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection while a batch is built. A 10,000-record body allocates ~100,000
    containers, none of them garbage, so the collector's generation-2 passes over the whole
    heap cost more than the parsing (120 ms of a 200 ms batch in bench/parse_micro.py).
    Plain refcounting still frees everything; the next allocation after resuming collects.
    Synchronous code only: no other task runs while it is paused."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def text(value: object, *, limit: int, code: int, name: str, required: bool) -> str | None:
    """A text field from JSON: a string, or an integer written as one (numbers sent as JSON
    numbers are common and lossless); anything else is the field's code."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif value is not None and not isinstance(value, str):
        raise Rejected(f"{name} must be a string", code=code)
    return bounded(value, limit=limit, code=code, name=name, required=required)


def plain_text(value: object, limit: int) -> str | None:
    """`value` when it is a string `text` takes unchanged (non-empty, within `limit`,
    printable), else None: the fast path's test, which leaves every refusal to `text`."""
    if type(value) is str and 0 < len(value) <= limit and value.isprintable():
        return value
    return None


def account_code(value: object) -> str | None:
    return text(
        value,
        limit=ACCOUNT_CODE_LIMIT,
        code=ACCOUNT_CODE_INVALID,
        name="account_code",
        required=False,
    )


def pbx_id(value: object, name: str) -> str | None:
    return text(value, limit=PBX_ID_LIMIT, code=EXTERNAL_ID_INVALID, name=name, required=False)


def ring_seconds(value: object, name: str = "ring_seconds") -> int | None:
    if value is None or value == "":
        return None
    return parse_whole(value, code=RING_SECONDS_INVALID, name=name)


def check_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` is stored as JSONB, which holds no NUL in any string; refuse it here, not as
    a rejected event after the PBX was told 0. Its size is bounded too: one event is one
    Kafka record, and a record the broker refuses as too large would be answered 50503
    ("retry later") on every retry."""
    if not extra:
        return extra
    encoded = orjson.dumps(extra)
    if len(encoded) > MAX_EXTRA_BYTES:
        raise Rejected(
            f"extra is {len(encoded)} bytes as JSON; the limit is {MAX_EXTRA_BYTES} bytes",
            code=EXTRA_INVALID,
        )
    if b"\\u0000" in encoded:
        raise Rejected("extra contains a NUL character", code=EXTRA_INVALID)
    return extra


def epoch_start(value: int) -> datetime | None:
    """Epoch seconds as an aware UTC instant; None outside 1970-2100 (held unrated)."""
    try:
        return aware(datetime.fromtimestamp(value, UTC), "UTC")
    except (OverflowError, OSError, ValueError):
        return None


def start_fields(
    start: datetime | None, raw: str | None, *, duration: int, now: datetime
) -> tuple[datetime | None, str | None]:
    """(start_time, start_time_raw) by the contract: missing is arrival minus duration; present
    but unreadable is kept raw and the record held unrated."""
    if start is not None:
        return start, None
    if raw is None or raw.strip() == "":
        return now - timedelta(seconds=duration), None
    return None, raw_start_time(raw)


def make_event(
    principal: Principal,
    *,
    now: datetime,
    source: str,
    originating_number: str,
    destination_number: str,
    duration: int,
    start_time: datetime | None,
    start_time_raw: str | None,
    disposition: str,
    ring_seconds: int | None = None,
    direction: str | None = None,
    account_code: str | None = None,
    external_id: str | None = None,
    extra: dict[str, Any] | None = None,
    recording_url: str | None = None,
) -> CdrSubmitted:
    # Every field was checked above, so the event is built without a second validation: the
    # fields go straight into the instance as model_construct would put them, at a fifth of
    # its cost (5 us a record, a quarter of the budget at 50,000 records/s).
    # tests/unit/test_parsing_native.py holds it equal to a validated CdrSubmitted.
    event = _new_event(CdrSubmitted)
    _set(
        event,
        "__dict__",
        {
            "cdr_id": new_cdr_id(),
            "database_id": principal.database_id,
            "api_account": principal.api_account_id,
            "source": source,
            "received_at": now,
            "originating_number": originating_number,
            "destination_number": destination_number,
            "start_time": start_time,
            "start_time_raw": start_time_raw,
            "duration": duration,
            "disposition": disposition,
            "ring_seconds": ring_seconds,
            "direction": direction,
            "account_code": account_code,
            "external_id": external_id,
            "extra": extra if extra is not None else {},
            "recording_url": recording_url,
        },
    )
    _set(event, "__pydantic_fields_set__", _ALL_FIELDS_SET)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


_new_event = object.__new__
_set = object.__setattr__
# One set for every event: a set per event was a tenth of a batch's collector work. Safe to
# share because nothing adds to it (CdrSubmitted is frozen: no setattr; model_copy copies it)
# and every field is already in it; test_parsing_fast_path holds pydantic to that.
_ALL_FIELDS_SET = set(CdrSubmitted.model_fields)

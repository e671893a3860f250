"""Submission rules of contract §2: validation codes, start times, the CdrSubmitted event.

Pure domain logic (no FastAPI, no aiokafka): routes hand it parameters, it hands back an
event or raises `Rejected` carrying the contract code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from cdrmodel.errors import CdrError
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.principals import Principal
from cdrmodel.timeutil import aware
from cdrmodel.validation import check_recording_url

ORIGIN_INVALID = 50411
DESTINATION_INVALID = 50412
DURATION_INVALID = 50416
ACCOUNT_CODE_INVALID = 50413
EXTERNAL_ID_INVALID = 50414
DUPLICATE = 50421
DAILY_LIMIT = 50429
UNAVAILABLE = 50503
ACCEPTED = 0
# Beyond the contract's table (docs/ingest.md lists our codes): here, not with the others in
# parsing/common.py, because the seed-000 path takes a recording URL too.
RECORDING_URL_INVALID = 50422

MAX_DURATION = 86400
MAX_RAW_START = 100
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION")
# Length limits of contract §2's table, shared by every submission path.
ORIGIN_LIMIT, DESTINATION_LIMIT, ACCOUNT_CODE_LIMIT, EXTERNAL_ID_LIMIT = 20, 20, 20, 15
_WHOLE = re.compile(r"[0-9]{1,9}")
_FORMATS = ("%Y-%b-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%b-%d %H:%M", "%Y-%m-%d %H:%M")


class Rejected(CdrError):
    """A record the contract rejects; nothing is stored."""

    status_code = 422


def parse_start_time(raw: str, timezone: str) -> datetime | None:
    """StartDateTime as seed 000 allows it; None when present but unreadable."""
    stripped = raw.strip()
    parsed: datetime | None = None
    try:
        # ISO first: it is the common form of batch bodies and PBX files, and fromisoformat is
        # an order of magnitude faster than a strptime miss.
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        text = stripped.replace("T", " ", 1) if "T" in stripped[:11] else stripped
        for fmt in _FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    # Outside 1970-2100 a time is a clock or parsing fault, not a call: held unrated.
    return aware(parsed, timezone)


def raw_start_time(raw: str) -> str:
    """An unreadable start time as it can be stored for correction (TEXT holds no NUL)."""
    text = raw if raw.isprintable() else "".join(c if c.isprintable() else "\ufffd" for c in raw)
    return text[:MAX_RAW_START]


def parse_whole(raw: object, *, code: int, name: str, maximum: int = MAX_DURATION) -> int:
    """A whole number of seconds: an int or a string of ASCII digits, 0..maximum.

    Strict on purpose: `false`, `12.5`, `"12.5"` and `-3` are refused with `code`, never
    coerced, so a PBX bug shows up as a code instead of a wrong bill.
    """
    if raw is None or raw == "":
        raise Rejected(f"{name} missing", code=code)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise Rejected(f"{name} must be a whole number of seconds", code=code)
    if isinstance(raw, int):
        value = raw
    else:
        text = raw.strip()
        if not _WHOLE.fullmatch(text):  # ASCII digits only: "²" and "٣" are not durations
            raise Rejected(f"{name} must be a whole number of seconds", code=code)
        value = int(text)
    if value < 0 or value > maximum:
        raise Rejected(f"{name} must be 0..{maximum}", code=code)
    return value


def parse_duration(raw: object) -> int:
    return parse_whole(raw, code=DURATION_INVALID, name="Duration")


def default_disposition(duration: int) -> str:
    """The contract's default: ANSWERED when the call lasted, else NO ANSWER."""
    return "ANSWERED" if duration > 0 else "NO ANSWER"


def bounded(value: str | None, *, limit: int, code: int, name: str, required: bool) -> str | None:
    """A text field within its length, printable, present when required; else `code`."""
    if value is None or value == "":
        if required:
            raise Rejected(f"{name} missing", code=code)
        return None
    if len(value) > limit:
        raise Rejected(f"{name} over {limit} characters", code=code)
    if not value.isprintable():  # NUL and other control characters cannot be stored
        raise Rejected(f"{name} contains control characters", code=code)
    return value


def recording_url(value: object, *, name: str) -> str | None:
    """Seed 003's `record`: None when absent or empty (seed 003 sends "" for a call without
    one); an absolute http(s) URL of at most 2048 characters; else RECORDING_URL_INVALID."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string (an http(s) URL)", code=RECORDING_URL_INVALID)
    try:
        return check_recording_url(value)
    except ValueError as exc:
        raise Rejected(f"{name} {exc}", code=RECORDING_URL_INVALID) from None


# (event field, seed-000 parameter, name in messages, max length, code, required), in the
# contract's check order; Duration (50416) is checked between the second and third.
_TEXT_FIELDS = (
    (
        "originating_number",
        "originatingnumber",
        "OriginatingNumber",
        ORIGIN_LIMIT,
        ORIGIN_INVALID,
        True,
    ),
    (
        "destination_number",
        "destinationnumber",
        "DestinationNumber",
        DESTINATION_LIMIT,
        DESTINATION_INVALID,
        True,
    ),
    ("account_code", "accountcode", "AccountCode", ACCOUNT_CODE_LIMIT, ACCOUNT_CODE_INVALID, False),
    ("external_id", "externalid", "ExternalID", EXTERNAL_ID_LIMIT, EXTERNAL_ID_INVALID, False),
)


def build_compat_event(
    params: Mapping[str, str], principal: Principal, *, now: datetime
) -> CdrSubmitted:
    """A seed-000 submission (parameter names already lower-cased) as a CdrSubmitted event."""
    checked = {
        key: bounded(params.get(param), limit=limit, code=code, name=name, required=required)
        for key, param, name, limit, code, required in _TEXT_FIELDS[:2]
    }
    duration = parse_duration(params.get("duration"))  # 50416 sits between them in the order
    checked.update(
        (key, bounded(params.get(param), limit=limit, code=code, name=name, required=required))
        for key, param, name, limit, code, required in _TEXT_FIELDS[2:]
    )
    origin, target = checked["originating_number"], checked["destination_number"]
    # After the contract's checks, so a record they refuse keeps the code it always had.
    recording = recording_url(params.get("record") or params.get("recordingurl"), name="Record")
    account_code, external_id = checked["account_code"], checked["external_id"]
    raw_start = params.get("startdatetime")
    start: datetime | None
    start_raw: str | None = None
    if raw_start is None or raw_start.strip() == "":
        start = now - timedelta(seconds=duration)
    else:
        start = parse_start_time(raw_start, principal.timezone)
        if start is None:
            start_raw = raw_start_time(raw_start)
    assert origin is not None and target is not None
    return CdrSubmitted(
        cdr_id=new_cdr_id(),
        database_id=principal.database_id,
        api_account=principal.api_account_id,
        source="api_submitcdr",
        received_at=now,
        originating_number=origin,
        destination_number=target,
        start_time=start,
        start_time_raw=start_raw,
        duration=duration,
        disposition=default_disposition(duration),
        account_code=account_code,
        external_id=external_id,
        recording_url=recording,
    )

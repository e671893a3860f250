"""`POST /v1/pbx/asterisk`: lines of cdr_csv's Master.csv, one call a line.

cdr_csv writes 16 columns, then `uniqueid` (loguniqueid), `userfield` (loguserfield) and
`peeraccount, linkedid, sequence` (newcdrcolumns): 16, 17, 18, 19, 20 or 21 columns. Strings
are quoted with inner quotes doubled; an unset time (an unanswered call's answer time) is a
bare empty field; times are the PBX's local clock without an offset.

`uniqueid` is not a call's identity: a forked Dial writes one line per callee with the same
uniqueid. A line's dedupe key is a hash of the whole line, so two different lines are two
calls and the same line posted again is a duplicate.
"""

from __future__ import annotations

import csv
import hashlib
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cdr_ingest.parsing.common import (
    DISPOSITION_INVALID,
    MALFORMED_RECORD,
    BadTimezone,
    Parsed,
    ParseResult,
    Refused,
    account_code,
    check_body_size,
    check_extra,
    check_record_count,
    make_event,
    pbx_id,
    start_fields,
    text,
)
from cdr_ingest.service import (
    DESTINATION_INVALID,
    DESTINATION_LIMIT,
    DISPOSITIONS,
    DURATION_INVALID,
    ORIGIN_INVALID,
    ORIGIN_LIMIT,
    Rejected,
    parse_duration,
    parse_start_time,
    parse_whole,
    recording_url,
)
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import Principal

BASE_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
NEW_COLUMNS = ("peeraccount", "linkedid", "sequence")
# `uniqueid` is "<epoch>.<sequence>", prefixed "<systemname>-" when systemname is set.
_UNIQUEID = re.compile(r"(?:[A-Za-z0-9_.]+-)?[0-9]{9,}\.[0-9]+")
_CLID_NUMBER = re.compile(r"<([^<>]*)>\s*$")
# Columns that become event fields; the others are kept in `extra` under their own names.
_MAPPED = frozenset({"accountcode", "src", "dst", "start", "duration", "billsec", "disposition"})
_URL_SCHEMES = ("http://", "https://")


def columns_for(fields: list[str]) -> tuple[str, ...] | None:
    """The column names of a line, by its width; None for a width cdr_csv never writes."""
    n = len(fields)
    new = n >= 19
    middle = n - 16 - (3 if new else 0)
    names: tuple[str, ...]
    if middle == 2:
        names = (*BASE_COLUMNS, "uniqueid", "userfield")
    elif middle == 1:
        # loguniqueid or loguserfield alone: the value tells which.
        optional = "uniqueid" if _UNIQUEID.fullmatch(fields[16]) else "userfield"
        names = (*BASE_COLUMNS, optional)
    elif middle == 0:
        names = BASE_COLUMNS
    else:
        return None
    return (*names, *NEW_COLUMNS) if new else names


def resolve_timezone(requested: str | None, principal: Principal) -> str:
    """`?tz=` when given (a 422 when it is no IANA zone), else the tenant's zone."""
    if not requested:
        return principal.timezone
    try:
        ZoneInfo(requested)
    except (KeyError, ValueError) as exc:
        raise BadTimezone(f"tz: {requested!r} is not an IANA time zone") from exc
    return requested


def _decode(raw: bytes) -> str:
    # Caller names come from SIP headers and old phones: Latin-1/CP1252 bytes appear in clid
    # on PBXs that write UTF-8 everywhere else. Such a line is read as CP1252 instead of
    # being refused; the dedupe key is taken from the bytes, so it does not depend on this.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def parse_asterisk(
    body: bytes, *, principal: Principal, now: datetime, timezone: str | None = None
) -> list[ParseResult]:
    """One result per non-empty line, in order; a malformed line is Refused MALFORMED_RECORD
    and the lines after it are still taken."""
    check_body_size(body)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    lines = [line for line in body.splitlines() if line.strip()]
    check_record_count(len(lines))
    zone = timezone or principal.timezone
    results: list[ParseResult] = []
    for number, raw in enumerate(lines, start=1):
        results.append(parse_line(raw, number=number, principal=principal, now=now, timezone=zone))
    if results and isinstance(results[0], Refused) and _is_header(lines[0]):
        results.pop(0)  # a header a person added when exporting; Master.csv has none
    return results


def _is_header(raw: bytes) -> bool:
    return raw.lower().replace(b'"', b"").startswith(b"accountcode,src,dst")


def dedupe_key(raw: bytes) -> str:
    """The line's identity: the same bytes (line ending aside) are the same call."""
    return "asterisk:" + hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest()


def parse_line(
    raw: bytes, *, number: int, principal: Principal, now: datetime, timezone: str
) -> ParseResult:
    if b"\x00" in raw:
        return Refused(MALFORMED_RECORD, f"line {number}: contains a NUL byte")
    try:
        fields = next(csv.reader((_decode(raw),), strict=True))
    except (csv.Error, StopIteration) as exc:
        return Refused(MALFORMED_RECORD, f"line {number}: not a CSV line ({exc})")
    names = columns_for(fields)
    if names is None:
        return Refused(
            MALFORMED_RECORD,
            f"line {number}: {len(fields)} columns; Master.csv lines have 16 to 21",
        )
    row = dict(zip(names, fields, strict=True))
    try:
        event = _event(row, principal=principal, now=now, timezone=timezone)
    except Rejected as exc:
        return Refused(exc.code or MALFORMED_RECORD, f"line {number}: {exc.message}")
    return Parsed(event, dedupe_key(raw))


def _event(
    row: dict[str, str], *, principal: Principal, now: datetime, timezone: str
) -> CdrSubmitted:
    src = row["src"]
    if not src:  # some channel drivers leave src empty and put the number only in clid
        found = _CLID_NUMBER.search(row["clid"])
        src = found.group(1) if found else ""
    origin = text(src, limit=ORIGIN_LIMIT, code=ORIGIN_INVALID, name="src", required=True)
    target = text(
        row["dst"], limit=DESTINATION_LIMIT, code=DESTINATION_INVALID, name="dst", required=True
    )
    # The billed duration is billsec (talk time); the rest of `duration` rang.
    billsec = parse_duration(row["billsec"])
    try:
        total = parse_whole(row["duration"], code=DURATION_INVALID, name="duration")
    except Rejected as exc:
        raise Rejected(exc.message, code=MALFORMED_RECORD) from None
    code = account_code(row["accountcode"])
    external_id = pbx_id(row.get("uniqueid"), "uniqueid")
    disposition = row["disposition"].strip().upper()
    if disposition not in DISPOSITIONS:
        raise Rejected(f"disposition {row['disposition']!r} is unknown", code=DISPOSITION_INVALID)
    start_raw = row["start"]
    start = parse_start_time(start_raw, timezone) if start_raw.strip() else None
    start_time, start_time_raw = start_fields(start, start_raw, duration=billsec, now=now)
    extra: dict[str, Any] = {k: v for k, v in row.items() if v and k not in _MAPPED}
    # cdr_csv has no column for a recording; a dialplan that stores its URL sets
    # CDR(userfield) to it. A userfield that is not an http(s) URL stays a userfield.
    recording = None
    if extra.get("userfield", "").lower().startswith(_URL_SCHEMES):
        recording = recording_url(extra.pop("userfield"), name="userfield")
    assert origin is not None and target is not None
    return make_event(
        principal,
        now=now,
        source="asterisk",
        originating_number=origin,
        destination_number=target,
        duration=billsec,
        start_time=start_time,
        start_time_raw=start_time_raw,
        disposition=disposition,
        ring_seconds=max(total - billsec, 0),
        account_code=code,
        external_id=external_id,
        extra=check_extra(extra),
        recording_url=recording,
    )

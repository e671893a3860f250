"""Asterisk cdr_csv Master.csv lines: the column variants, local times, quoting, identity."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdr_ingest.parsing import BadTimezone, Parsed, Refused, parse_asterisk, resolve_timezone
from cdrmodel.principals import Principal

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pbx"
TORONTO = Principal("DB", "ACC", "", None, None, "America/Toronto", "CA", "CAD")
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def parse(body: bytes, tz: str | None = None) -> list[Parsed | Refused]:
    return parse_asterisk(body, principal=TORONTO, now=NOW, timezone=tz)


def events(name: str) -> list[Parsed]:
    results = parse((FIXTURES / name).read_bytes())
    assert all(isinstance(r, Parsed) for r in results), results
    return results  # type: ignore[return-value]


def test_16_columns_bill_billsec_with_the_rest_ringing_in_tenant_local_time() -> None:
    answered, unanswered = events("asterisk_16.csv")
    e = answered.event
    assert (e.originating_number, e.destination_number) == ("1000", "16135550100")
    assert (e.duration, e.ring_seconds, e.disposition) == (84, 7, "ANSWERED")
    assert e.start_time is not None and e.start_time.isoformat() == "2026-03-02T09:15:04-05:00"
    assert (
        e.extra["clid"] == '"Anne Tremblay" <1000>' and e.extra["answer"] == "2026-03-02 09:15:11"
    )
    assert e.external_id is None and e.source == "asterisk"
    u = unanswered.event
    assert (u.duration, u.ring_seconds, u.disposition) == (0, 25, "NO ANSWER")
    assert "answer" not in u.extra  # the bare empty field


def test_17_columns_tell_uniqueid_from_userfield() -> None:
    [with_id] = events("asterisk_17_uniqueid.csv")
    assert with_id.event.external_id == "1782997200.5" and with_id.event.account_code == "ACME"
    assert with_id.event.start_time is not None
    assert with_id.event.start_time.isoformat() == "2026-07-02T09:00:00-04:00"  # daylight time
    [with_field] = events("asterisk_17_userfield.csv")
    assert with_field.event.external_id is None
    assert with_field.event.extra["userfield"] == "campaign=spring"


def test_18_columns_take_the_good_lines_around_a_malformed_one() -> None:
    results = parse((FIXTURES / "asterisk_18.csv").read_bytes())
    assert [r.code for r in results] == [0, 0, 0, 50460, 0]
    malformed = results[3]
    assert isinstance(malformed, Refused) and "line 4" in malformed.message
    last = results[4]
    assert isinstance(last, Parsed) and last.event.extra["userfield"] == "vip"


def test_doubled_quotes_and_non_utf8_clid_are_read() -> None:
    results = parse((FIXTURES / "asterisk_18.csv").read_bytes())
    first, busy = results[0], results[2]
    assert isinstance(first, Parsed) and isinstance(busy, Parsed)
    assert first.event.extra["clid"] == '"Roy, Jean "JL"" <16135550177>'
    assert busy.event.extra["clid"] == '"Hélène Côté" <16135550188>'
    assert busy.event.disposition == "BUSY"


def test_forked_lines_sharing_a_uniqueid_are_two_calls_and_a_repost_is_the_same() -> None:
    body = (FIXTURES / "asterisk_18.csv").read_bytes()
    first, second = parse(body)[:2]
    assert isinstance(first, Parsed) and isinstance(second, Parsed)
    assert first.event.external_id == second.event.external_id == "1772467200.16"
    assert first.dedupe_key != second.dedupe_key
    again = parse(body.replace(b"\n", b"\r\n"))[0]  # posted again, from a Windows copy
    assert isinstance(again, Parsed) and again.dedupe_key == first.dedupe_key
    assert again.event.cdr_id != first.event.cdr_id


def test_21_columns_keep_linkedid_and_sequence() -> None:
    answered, congested = events("asterisk_21.csv")
    assert answered.event.extra["linkedid"] == "1772478000.30"
    assert answered.event.extra["sequence"] == "42"
    assert (answered.event.duration, answered.event.ring_seconds) == (180, 6)
    assert congested.event.disposition == "CONGESTION"


def test_tz_parameter_overrides_the_tenant_zone() -> None:
    [answered, _] = parse((FIXTURES / "asterisk_16.csv").read_bytes(), "Europe/Paris")
    assert isinstance(answered, Parsed) and answered.event.start_time is not None
    assert answered.event.start_time.isoformat() == "2026-03-02T09:15:04+01:00"
    assert resolve_timezone(None, TORONTO) == "America/Toronto"
    assert resolve_timezone("UTC", TORONTO) == "UTC"
    with pytest.raises(BadTimezone):
        resolve_timezone("Mars/Olympus", TORONTO)


LINE = (
    '"","1000","16135550100","ctx","""A"" <1000>","SIP/1-1","SIP/2-2","Dial","x",'
    '"{start}",,"2026-03-02 10:00:25",{duration},{billsec},"{disposition}","DOCUMENTATION"'
)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"billsec": "x"}, 50416),
        ({"billsec": "-1"}, 50416),
        ({"duration": "abc"}, 50460),
        ({"disposition": "MAYBE"}, 50418),
    ],
)
def test_bad_values_answer_a_code_per_line(fields: dict[str, str], code: int) -> None:
    values = {"start": "2026-03-02 10:00:00", "duration": "25", "billsec": "0"}
    values["disposition"] = "NO ANSWER"
    values.update(fields)
    [result] = parse(LINE.format(**values).encode())
    assert result.code == code


def test_an_unreadable_start_time_is_accepted_and_kept_raw() -> None:
    line = LINE.format(start="02/03/2026 10h", duration=25, billsec=0, disposition="NO ANSWER")
    [result] = parse(line.encode())
    assert isinstance(result, Parsed)
    assert result.event.start_time is None and result.event.start_time_raw == "02/03/2026 10h"


@pytest.mark.parametrize(
    "line",
    [b'"unterminated,1,2', b"a,b,c", b'"","1000","1613"' + b",x" * 19, b'"a\x00b"' + b",x" * 15],
)
def test_malformed_lines_answer_50460(line: bytes) -> None:
    [result] = parse(line)
    assert result.code == 50460


def test_a_header_line_and_blank_lines_are_skipped() -> None:
    header = b"accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,"
    header += b"answer,end,duration,billsec,disposition,amaflags\n\n"
    body = b"\xef\xbb\xbf" + header + (FIXTURES / "asterisk_16.csv").read_bytes() + b"\n\n"
    assert [r.code for r in parse(body)] == [0, 0]

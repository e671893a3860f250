"""The native body parser: shapes, limits, contract and seed-003 names, strict types."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr_ingest.parsing import (
    MAX_RECORDS,
    BodyTooLarge,
    BodyUnreadable,
    Parsed,
    Refused,
    parse_native,
)
from cdr_ingest.parsing.common import EXTRA_INVALID, MAX_EXTRA_BYTES, make_event
from cdrmodel.errors import CdrError
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import Principal

TORONTO = Principal("DB", "ACC", "", None, None, "America/Toronto", "CA", "CAD")
NOW = datetime(2026, 3, 2, 17, 0, 0, tzinfo=UTC)
GOOD = {"originating_number": "100", "destination_number": "16135550100", "duration": 90}


def parse(body: bytes, content_type: str | None = "application/json") -> list[Parsed | Refused]:
    return parse_native(body, content_type=content_type, principal=TORONTO, now=NOW)


def one(record: object) -> Parsed | Refused:
    [result] = parse(orjson.dumps(record))
    return result


def test_object_array_and_ndjson_give_one_result_per_record_in_order() -> None:
    records = [{**GOOD, "external_id": f"e{i}"} for i in range(3)]
    assert [r.event.external_id for r in parse(orjson.dumps(GOOD | {"external_id": "x"}))] == ["x"]  # type: ignore[union-attr]
    for body, ctype in (
        (orjson.dumps(records), "application/json"),
        (b"\n".join(orjson.dumps(r) for r in records) + b"\n\n", "application/x-ndjson"),
    ):
        results = parse(body, ctype)
        assert [r.event.external_id for r in results if isinstance(r, Parsed)] == ["e0", "e1", "e2"]


def test_a_broken_ndjson_line_is_refused_alone() -> None:
    body = orjson.dumps(GOOD) + b"\n{not json\n" + orjson.dumps(GOOD)
    results = parse(body, "application/x-ndjson; charset=utf-8")
    assert [r.code for r in results] == [0, 50400, 0]


def test_over_ten_thousand_records_is_413_naming_the_limit() -> None:
    with pytest.raises(BodyTooLarge) as exc:
        parse(orjson.dumps([GOOD] * (MAX_RECORDS + 1)))
    assert exc.value.status_code == 413 and "10,000" in exc.value.message
    body = b"\n".join([orjson.dumps(GOOD)] * (MAX_RECORDS + 1))
    with pytest.raises(BodyTooLarge):
        parse(body, "application/x-ndjson")


def test_over_ten_mib_is_413_naming_the_limit() -> None:
    with pytest.raises(BodyTooLarge) as exc:
        parse(b" " * (10 * 1024 * 1024 + 1))
    assert "10 MiB" in exc.value.message


@pytest.mark.parametrize("body", [b"", b"{", b'{"a":1}\n{"a":2}'])
def test_a_body_that_is_not_json_is_400(body: bytes) -> None:
    with pytest.raises(BodyUnreadable) as exc:
        parse(body)
    assert exc.value.status_code == 400


def test_contract_fields_are_taken_and_unknown_fields_kept_in_extra() -> None:
    result = one(
        {
            **GOOD,
            "start_time": "2026-03-02 09:15:04",
            "account_code": "SALES",
            "external_id": "X1",
            "disposition": "busy",
            "ring_seconds": "7",
            "direction": "Inbound",
            "extra": {"agent": "Anne"},
            "queue": "sales",
        }
    )
    assert isinstance(result, Parsed)
    e = result.event
    assert e.start_time is not None and e.start_time.isoformat() == "2026-03-02T09:15:04-05:00"
    assert (e.account_code, e.external_id, e.disposition) == ("SALES", "X1", "BUSY")
    assert (e.ring_seconds, e.direction) == (7, "inbound")
    assert e.extra == {"queue": "sales", "agent": "Anne"}
    assert result.dedupe_key is None


@pytest.mark.parametrize(("duration", "disposition"), [(90, "ANSWERED"), ("0", "NO ANSWER")])
def test_disposition_defaults_by_duration(duration: object, disposition: str) -> None:
    result = one({**GOOD, "duration": duration})
    assert isinstance(result, Parsed) and result.event.disposition == disposition


@pytest.mark.parametrize(
    "value", [False, True, 12.5, 90.0, -3, "abc", "12.5", "-3", None, [], {}, 86401]
)
def test_durations_are_strict_50416(value: object) -> None:
    assert one({**GOOD, "duration": value}).code == 50416


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("originating_number", None, 50411),
        ("originating_number", "1" * 21, 50411),
        ("originating_number", True, 50411),
        ("destination_number", "16\x00", 50412),
        ("account_code", ["x"], 50413),
        ("external_id", "e" * 16, 50414),
        ("ring_seconds", 2.5, 50417),
        ("ring_seconds", False, 50417),
        ("disposition", "MAYBE", 50418),
        ("direction", "sideways", 50419),
        ("extra", [1], 50420),
        ("extra", {"note": "a\x00b"}, 50420),
    ],
)
def test_each_field_answers_its_own_code(field: str, value: object, code: int) -> None:
    assert one({**GOOD, field: value}).code == code


def test_first_failing_check_wins_in_the_contract_order() -> None:
    bad = {"originating_number": "100", "duration": "x", "external_id": "e" * 20}
    assert one(bad).code == 50412
    assert one({**bad, "destination_number": "1"}).code == 50416


@pytest.mark.parametrize("record", [42, "x", None, [GOOD], True])
def test_a_record_that_is_not_an_object_is_refused(record: object) -> None:
    assert [r.code for r in parse(orjson.dumps([GOOD, record, GOOD]))] == [0, 50400, 0]
    if not isinstance(record, list):  # a top-level array is the batch itself
        assert one(record).code == 50400


def test_phone_numbers_sent_as_json_numbers_are_taken_as_text() -> None:
    result = one({**GOOD, "originating_number": 100, "destination_number": 16135550100})
    assert isinstance(result, Parsed)
    assert result.event.destination_number == "16135550100"


@pytest.mark.parametrize(
    ("start", "iso", "raw"),
    [
        ("2026-03-02T09:15:04+02:00", "2026-03-02T09:15:04+02:00", None),
        ("2026-Mar-02 09:15:04", "2026-03-02T09:15:04-05:00", None),
        (1772442904, "2026-03-02T09:15:04+00:00", None),
        ("yesterday", None, "yesterday"),
        (True, None, "true"),
    ],
)
def test_start_times(start: object, iso: str | None, raw: str | None) -> None:
    result = one({**GOOD, "start_time": start})
    assert isinstance(result, Parsed)
    e = result.event
    assert (e.start_time.isoformat() if e.start_time else None, e.start_time_raw) == (iso, raw)


def test_a_missing_start_time_is_arrival_minus_duration() -> None:
    result = one(GOOD)
    assert isinstance(result, Parsed)
    assert result.event.start_time == datetime(2026, 3, 2, 16, 58, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "given"),
    [
        (GOOD, False),
        ({**GOOD, "start_time": None}, False),
        ({**GOOD, "start_time": "  "}, False),
        ({**GOOD, "start_time": "2026-03-02 11:58:30"}, True),
        # Exactly arrival minus duration, yet sent: still the record's own start time.
        ({**GOOD, "start_time": "2026-03-02T16:58:30+00:00"}, True),
        ({**GOOD, "start_time": "yesterday"}, True),
        ({"caller": "100", "target": "200", "duration": 5}, False),
        ({"caller": "100", "target": "200", "duration": 5, "time": 1772442904}, True),
    ],
)
def test_start_given_says_whether_the_record_carried_a_start_time(
    record: dict[str, object], given: bool
) -> None:
    result = one(record)
    assert isinstance(result, Parsed)
    assert result.start_given is given


SEED_OUTGOING = {
    "caller": "0722776772",
    "target": "0501234567",
    "time": 1595960350,
    "duration": 11,
    "ivruniqueid": "2020072818dcDHFJcc804",
    "type": "Extension Outgoing",
    "status": "ANSWER",
    "targetextension": "",
    "callerextension": "SIPSIP",
    "did": "",
    "queueid": 0,
    "record": "https://example.net/rec/2020072818dcDHFJcc804.mp3",
    "price": 0,
    "dialtime": 2,
    "representative_name": "User 1",
}


def test_seed_003_records_are_mapped_and_their_other_fields_kept() -> None:
    result = one(SEED_OUTGOING)
    assert isinstance(result, Parsed)
    e = result.event
    assert (e.originating_number, e.destination_number, e.duration) == (
        "0722776772",
        "0501234567",
        11,
    )
    assert e.start_time == datetime.fromtimestamp(1595960350, UTC)
    assert (e.external_id, e.ring_seconds) == ("2020072818dcDHFJcc804", 2)
    assert (e.disposition, e.direction) == ("ANSWERED", "outbound")
    assert e.extra["type"] == "Extension Outgoing" and e.extra["status"] == "ANSWER"
    assert e.extra["representative_name"] == "User 1"
    # The recording URL is the event's own field (cdr.recording_url), not kept twice.
    assert e.recording_url == "https://example.net/rec/2020072818dcDHFJcc804.mp3"
    assert not {"caller", "target", "time", "duration", "ivruniqueid", "dialtime", "record"} & (
        e.extra.keys()
    )


def test_seed_003_incoming_queue_call_takes_the_did_and_maps_abandoned() -> None:
    record = {
        "caller": "0501234567",
        "target": "",
        "time": "1595333610",
        "duration": 0,
        "ivruniqueid": "202007211213270124c",
        "type": "Queue",
        "status": "ABANDONE",
        "did": "0722776772",
        "dialtime": "20",
    }
    result = one(record)
    assert isinstance(result, Parsed)
    e = result.event
    assert (e.destination_number, e.direction, e.disposition) == (
        "0722776772",
        "inbound",
        "NO ANSWER",
    )
    assert e.extra["did"] == "0722776772" and e.ring_seconds == 20


def test_seed_003_dialtime_is_strict() -> None:
    assert one({**SEED_OUTGOING, "dialtime": 1.5}).code == 50417
    assert one({**SEED_OUTGOING, "duration": False}).code == 50416


def test_fast_built_events_equal_validated_ones() -> None:
    result = one({**GOOD, "start_time": "2026-03-02 09:15:04", "extra": {"a": [1, {"b": None}]}})
    assert isinstance(result, Parsed)
    event = result.event
    validated = CdrSubmitted.model_validate(event.model_dump())
    assert validated == event and validated.model_dump_json() == event.model_dump_json()
    assert event.model_fields_set == validated.model_fields_set
    with pytest.raises(ValueError):
        event.duration = 5  # type: ignore[misc]  # still frozen
    built = make_event(
        TORONTO,
        now=NOW,
        source="api",
        originating_number="1",
        destination_number="2",
        duration=0,
        start_time=None,
        start_time_raw="x",
        disposition="NO ANSWER",
    )
    assert built.extra == {} and built.ring_seconds is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=30,
)
field_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
records = st.fixed_dictionaries(
    {},
    optional={
        name: field_values
        for name in (
            "originating_number",
            "destination_number",
            "start_time",
            "duration",
            "account_code",
            "external_id",
            "disposition",
            "ring_seconds",
            "direction",
            "caller",
            "target",
            "time",
            "ivruniqueid",
            "dialtime",
            "status",
            "type",
        )
    }
    | {"extra": json_values},
)


@settings(max_examples=300, deadline=None)
@given(value=json_values | records | st.lists(records, max_size=5), ndjson=st.booleans())
def test_any_json_value_gives_results_or_a_clear_error(value: object, ndjson: bool) -> None:
    body = json.dumps(value).encode()
    if ndjson and isinstance(value, list):
        body = b"\n".join(json.dumps(v).encode() for v in value)
    try:
        results = parse(body, "application/x-ndjson" if ndjson else "application/json")
    except CdrError as exc:
        assert exc.status_code in (400, 413) and exc.message
        return
    for r in results:
        assert isinstance(r, Parsed | Refused)
        if isinstance(r, Refused):
            assert 50400 <= r.code < 50500 and r.message
        else:
            CdrSubmitted.model_validate(r.event.model_dump())


def test_an_extra_too_large_for_one_kafka_record_is_refused_with_its_code() -> None:
    # Without a bound, a record of 2 MiB of extra passed every check and the broker refused
    # it as too large: answered 50503 ("retry later") on every retry, forever.
    big = one({**GOOD, "extra": {"blob": "x" * (MAX_EXTRA_BYTES + 1)}})
    assert isinstance(big, Refused) and big.code == EXTRA_INVALID
    assert f"the limit is {MAX_EXTRA_BYTES} bytes" in big.message
    fits = one({**GOOD, "extra": {"blob": "x" * (MAX_EXTRA_BYTES - 100)}})
    assert isinstance(fits, Parsed)

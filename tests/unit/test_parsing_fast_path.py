"""The one-pass reading of well-formed native records gives what the general rules give.

`parse_native` reads a plain contract record (strings within limits, whole seconds as ints,
an ISO start time) in one pass and hands anything else to `parse_record`. These tests hold
the two equal on every record, well-formed or not, and the key and answer shortcuts of the
route equal to the plain forms they replaced.
"""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cdr_ingest.batch_routes import _answers, to_submit
from cdr_ingest.dedupe import KIND_EXTERNAL_ID, Outcome, _digest, key_for
from cdr_ingest.parsing import Parsed, ParseResult, Refused, gc_paused, parse_native
from cdr_ingest.parsing.native import _well_formed, parse_record
from cdr_ingest.service import ACCEPTED, DUPLICATE
from cdrmodel.events import CdrSubmitted, new_cdr_id
from cdrmodel.principals import Principal

TORONTO = Principal("DB", "ACC", "", None, None, "America/Toronto", "CA", "CAD")
NOW = datetime(2026, 3, 2, 17, 0, 0, tzinfo=UTC)
PLAIN = {
    "originating_number": "6135550100",
    "destination_number": "16138220000",
    "start_time": "2026-03-02T09:15:04",
    "duration": 90,
    "external_id": "call-1",
}


def general(record: object) -> ParseResult:
    return parse_record(record, principal=TORONTO, now=NOW, timezone=TORONTO.timezone)


def fast(record: object) -> ParseResult:
    [result] = parse_native(
        orjson.dumps(record), content_type="application/json", principal=TORONTO, now=NOW
    )
    return result


def same(a: ParseResult, b: ParseResult) -> bool:
    """Equal but for the cdr_id each parse draws afresh."""
    if isinstance(a, Parsed) and isinstance(b, Parsed):
        fields = a.event.model_dump(exclude={"cdr_id"}) == b.event.model_dump(exclude={"cdr_id"})
        return fields and (a.dedupe_key, a.start_given) == (b.dedupe_key, b.start_given)
    return a == b


def test_a_plain_record_takes_the_one_pass_path_and_reads_as_the_general_rules() -> None:
    taken = _well_formed(dict(PLAIN), TORONTO, NOW, TORONTO.timezone)
    assert taken is not None
    assert taken.event.start_time == datetime(2026, 3, 2, 14, 15, 4, tzinfo=UTC)
    assert same(taken, general(dict(PLAIN)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("originating_number", 6135550100),  # a number: the general rules make it text
        ("originating_number", "1\x00"),
        ("destination_number", ""),
        ("duration", "90"),
        ("duration", True),
        ("external_id", "x" * 16),
        ("disposition", "answered"),
        ("direction", "Inbound"),
        ("ring_seconds", "5"),
        ("start_time", "2026-Mar-02 09:15:04"),  # a seed-000 form
        ("start_time", " 2026-03-02T09:15:04"),
        ("start_time", "1772443504"),  # epoch seconds as a string
        ("start_time", 1772443504),
        ("extra", {"a": 1}),
        ("queue", "sales"),  # an unknown field goes to extra
    ],
)
def test_anything_unusual_is_left_to_the_general_rules(field: str, value: object) -> None:
    assert _well_formed({**PLAIN, field: value}, TORONTO, NOW, TORONTO.timezone) is None


_text = st.one_of(
    st.sampled_from(
        ["100", "16135550100", "x" * 15, "x" * 16, "x" * 20, "x" * 21, "", " ", "a\x00"]
    ),
    st.text(max_size=22),
    st.integers(min_value=-5, max_value=10**12),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
_seconds = st.one_of(
    st.integers(min_value=-2, max_value=86_402),
    st.sampled_from(["90", " 90", "9.5", "", "٣"]),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
_starts = st.one_of(
    st.sampled_from(
        [
            "2026-03-02T09:15:04",
            "2026-03-02 09:15:04",
            "2026-03-02T09:15:04+05:30",
            "2026-03-02T09:15:04Z",
            "2026-03-02",
            "20260302",
            "1772443504",
            "2026-Mar-02 09:15:04",
            "2026-03-02 09:15",
            " 2026-03-02T09:15:04 ",
            "1969-12-31T23:59:59+00:00",
            "2101-01-01T00:00:00",
            "not a time",
            "",
            "  ",
        ]
    ),
    st.text(max_size=30),
    st.integers(min_value=-(10**12), max_value=10**13),
    st.none(),
    st.floats(allow_nan=False),
)
_choices = st.one_of(
    st.sampled_from(["ANSWERED", "answered", " BUSY", "NO ANSWER", "inbound", "outbound", ""]),
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
_records = st.fixed_dictionaries(
    {
        "originating_number": _text,
        "destination_number": _text,
        "duration": _seconds,
    },
    optional={
        "start_time": _starts,
        "account_code": _text,
        "external_id": _text,
        "ring_seconds": _seconds,
        "disposition": _choices,
        "direction": _choices,
        "extra": st.one_of(st.none(), st.just({}), st.just({"k": "v"}), st.just([1])),
        "queue": st.just("sales"),
    },
)


@settings(max_examples=400, deadline=None)
@given(record=_records)
def test_every_record_reads_the_same_on_both_paths(record: dict[str, Any]) -> None:
    sent = orjson.loads(orjson.dumps(record))  # as the body carries it (inf is null)
    assert same(fast(sent), general(sent))


def test_the_external_id_digest_is_the_generic_one() -> None:
    [parsed] = parse_native(
        orjson.dumps(PLAIN), content_type="application/json", principal=TORONTO, now=NOW
    )
    assert isinstance(parsed, Parsed)
    key = key_for(parsed.event, start_given=True)
    assert key is not None
    assert key.kind == KIND_EXTERNAL_ID
    assert key.digest == _digest("x", "call-1")


def test_gc_paused_restores_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller's own pause is not ended by a nested one
    finally:
        gc.enable()


def test_answers_follow_the_body_order_and_count_each_code() -> None:
    body = b"\n".join([orjson.dumps(PLAIN), b"{", orjson.dumps({**PLAIN, "external_id": "call-2"})])
    results = parse_native(body, content_type="application/x-ndjson", principal=TORONTO, now=NOW)
    events, keys = to_submit(results)
    assert len(events) == len(keys) == 2
    first, second = uuid.uuid4(), uuid.uuid4()
    answers, counts = _answers(results, [Outcome(ACCEPTED, first), Outcome(DUPLICATE, second)])
    refused = results[1]
    assert isinstance(refused, Refused)
    assert answers == [
        {"index": 0, "code": 0, "id": first},
        {"index": 1, "code": refused.code, "id": None, "message": refused.message},
        {
            "index": 2,
            "code": DUPLICATE,
            "id": second,
            "message": "this call record has already been submitted",
        },
    ]
    assert counts == {0: 1, refused.code: 1, DUPLICATE: 1}


def test_events_share_one_fields_set_that_pydantic_never_changes() -> None:
    body = b"\n".join(orjson.dumps({**PLAIN, "external_id": f"c{n}"}) for n in range(2))
    first, second = parse_native(
        body, content_type="application/x-ndjson", principal=TORONTO, now=NOW
    )
    assert isinstance(first, Parsed) and isinstance(second, Parsed)
    shared = first.event.model_fields_set
    assert shared is second.event.model_fields_set
    assert shared == set(CdrSubmitted.model_fields)
    copied = first.event.model_copy(update={"cdr_id": uuid.uuid4()})
    assert copied.model_fields_set is not shared
    with pytest.raises(ValidationError):
        first.event.duration = 5  # type: ignore[misc]  # frozen: no setattr adds to the set
    assert shared == set(CdrSubmitted.model_fields)
    assert CdrSubmitted.model_validate(first.event.model_dump()) == first.event


def test_new_cdr_ids_are_plain_stdlib_uuid7s_in_order() -> None:
    ids = [new_cdr_id() for _ in range(1000)]
    assert all(type(i) is uuid.UUID and i.version == 7 for i in ids)
    assert all(i == uuid.UUID(str(i)) == uuid.UUID(bytes=i.bytes) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert orjson.loads(orjson.dumps({"id": ids[0]})) == {"id": str(ids[0])}

"""FreeSWITCH mod_json_cdr bodies: profiles, percent-encoding, legs, dispositions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdr_ingest.parsing import BodyUnreadable, Parsed, Refused, parse_freeswitch
from cdrmodel.principals import Principal

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pbx"
TENANT = Principal("DB", "ACC", "", None, None, "America/Toronto", "CA", "CAD")
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def parse(body: bytes) -> list[Parsed | Refused]:
    return parse_freeswitch(body, principal=TENANT, now=NOW)


def parsed(name: str) -> Parsed:
    [result] = parse((FIXTURES / name).read_bytes())
    assert isinstance(result, Parsed), result
    return result


def test_repeated_callflow_keys_use_the_current_profile_not_the_last_key() -> None:
    body = (FIXTURES / "freeswitch_repeated_callflow.json").read_bytes()
    # What a plain json.loads sees: only the oldest profile, with the undialled 9 prefix.
    assert json.loads(body)["callflow"]["caller_profile"]["destination_number"] == "916135550100"
    e = parsed("freeswitch_repeated_callflow.json").event
    assert (e.originating_number, e.destination_number) == ("1000", "16135550100")
    assert e.extra["dialed_number"] == "916135550100"


def test_billed_duration_is_billsec_and_the_rest_rang() -> None:
    result = parsed("freeswitch_repeated_callflow.json")
    e = result.event
    assert (e.duration, e.ring_seconds, e.disposition) == (84, 7, "ANSWERED")
    assert e.start_time == datetime.fromtimestamp(1772442904, UTC)
    assert e.source == "freeswitch"


def test_percent_encoded_values_are_decoded_and_plus_stays_a_plus() -> None:
    e = parsed("freeswitch_repeated_callflow.json").event
    assert e.account_code == "SALES EAST"
    a_leg = parsed("freeswitch_bridge_a_leg.json").event
    assert a_leg.originating_number == "+16135550177"
    assert a_leg.extra["caller_id_name"] == "Roy, Jean+Luc"


def test_the_a_leg_is_billed_once_keyed_by_its_uuid_and_links_its_b_leg() -> None:
    result = parsed("freeswitch_bridge_a_leg.json")
    e = result.event
    assert e.external_id == "a7d0c1e2-0f3b-4a55-8c9d-1e2f3a4b5c6d"
    assert result.dedupe_key == "freeswitch:a7d0c1e2-0f3b-4a55-8c9d-1e2f3a4b5c6d"
    assert e.extra["b_leg_uuids"] == ["b8e1d2f3-1a4c-4b66-9dae-2f3a4b5c6d7e"]
    assert (e.destination_number, e.duration, e.ring_seconds) == ("16135550000", 45, 6)


def test_the_b_leg_is_not_billed_and_names_its_a_leg() -> None:
    [result] = parse((FIXTURES / "freeswitch_bridge_b_leg.json").read_bytes())
    assert isinstance(result, Refused) and result.code == 50462
    assert "a7d0c1e2-0f3b-4a55-8c9d-1e2f3a4b5c6d" in result.message


def test_b_leg_found_by_its_originator_profile_alone() -> None:
    doc = json.loads((FIXTURES / "freeswitch_bridge_b_leg.json").read_bytes())
    del doc["variables"]["originating_leg_uuid"]
    [result] = parse(json.dumps(doc).encode())
    assert result.code == 50462


def test_unanswered_leg_takes_its_disposition_from_the_hangup_cause() -> None:
    e = parsed("freeswitch_busy.json").event
    assert (e.disposition, e.duration, e.ring_seconds) == ("BUSY", 0, 4)
    doc = json.loads((FIXTURES / "freeswitch_busy.json").read_bytes())
    for cause, disposition in [
        ("NO_ANSWER", "NO ANSWER"),
        ("NORMAL_CIRCUIT_CONGESTION", "CONGESTION"),
        ("UNALLOCATED_NUMBER", "FAILED"),
    ]:
        doc["variables"]["hangup_cause"] = cause
        [result] = parse(json.dumps(doc).encode())
        assert isinstance(result, Parsed) and result.event.disposition == disposition


def test_an_array_of_cdrs_gives_a_result_each() -> None:
    docs = [
        json.loads((FIXTURES / n).read_bytes())
        for n in ("freeswitch_busy.json", "freeswitch_bridge_b_leg.json")
    ]
    assert [r.code for r in parse(json.dumps(docs).encode())] == [0, 50462]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: d["variables"].pop("billsec"), 50416),
        (lambda d: d["variables"].update(billsec="1.5"), 50416),
        (lambda d: d.pop("callflow"), 50460),
        (lambda d: d["callflow"][0]["caller_profile"].update(destination_number=""), 50412),
    ],
)
def test_broken_cdrs_are_refused_with_a_code(change: object, code: int) -> None:
    doc = json.loads((FIXTURES / "freeswitch_busy.json").read_bytes())
    change(doc)  # type: ignore[operator]
    [result] = parse(json.dumps(doc).encode())
    assert result.code == code


def test_not_json_is_400() -> None:
    with pytest.raises(BodyUnreadable):
        parse(b"<cdr></cdr>")
    assert [r.code for r in parse(b"[1]")] == [50460]


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1"])
def test_a_body_nested_too_deep_is_400_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(BodyUnreadable):
        parse(body)

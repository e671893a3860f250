"""Recording URLs on every submission path (taken, checked, 50422) and rendered as `record`.
Pure, no I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from cdr_ingest.parsing import Parsed, Refused, parse_asterisk, parse_freeswitch, parse_native
from cdr_ingest.service import RECORDING_URL_INVALID, Rejected, build_compat_event
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import Principal
from cdrmodel.record import render_record
from cdrmodel.validation import RECORDING_URL_LIMIT, check_recording_url

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TENANT = Principal("DB", "ACC", "", None, None, "UTC", "US", "USD")
URL = "https://pbx.example.net/CallsHistory/PlayRecord/2020072818dcDHFJcc804?key=a%20b&x=1"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "pbx"

BAD_URLS = [
    "ftp://pbx.example.net/rec.mp3",  # not http(s)
    "javascript:alert(1)",
    "/CallsHistory/PlayRecord/1",  # relative
    "https:///no-host",
    "https://pbx.example.net/a b.mp3",  # a space
    "https://pbx.example.net/\r\nSet-Cookie: x=1",  # header injection
    "https://exämple.net/rec.mp3",  # not ASCII (IDNA form needed)
    "https://pbx.example.net:99999/rec.mp3",  # no such port
    "https://pbx.example.net/" + "a" * RECORDING_URL_LIMIT,  # too long
]


def native(record: dict[str, Any]) -> Parsed | Refused:
    (result,) = parse_native(
        json.dumps(record).encode(), content_type="application/json", principal=TENANT, now=NOW
    )
    return result


def taken(result: Parsed | Refused) -> CdrSubmitted:
    assert isinstance(result, Parsed), result
    return result.event


CONTRACT = {"originating_number": "100", "destination_number": "16135550100", "duration": 60}
SEED = {"caller": "0722776772", "target": "0501234567", "time": 1595960350, "duration": 11}


@pytest.mark.parametrize(
    "record",
    [
        {**SEED, "record": URL, "type": "Extension Outgoing"},
        {**CONTRACT, "record": URL},
        {**CONTRACT, "recording_url": URL},
        {**CONTRACT, "extra": {"record": URL, "campaign": "spring"}},
        {**CONTRACT, "record": URL, "recording_url": URL},  # both, the same: fine
    ],
)
def test_json_records_carry_the_recording_url_in_the_event_not_in_extra(
    record: dict[str, Any],
) -> None:
    event = taken(native(record))
    assert event.recording_url == URL
    assert not {"record", "recording_url"} & event.extra.keys()


def test_a_json_record_without_or_with_an_empty_recording_has_none() -> None:
    assert taken(native(CONTRACT)).recording_url is None
    assert taken(native({**SEED, "record": ""})).recording_url is None  # seed 003 sends ""
    assert taken(native({**CONTRACT, "record": None})).recording_url is None


@pytest.mark.parametrize("url", [*BAD_URLS, 42, ["https://pbx.example.net/"], True])
def test_a_bad_recording_url_is_refused_50422_naming_the_field(url: object) -> None:
    for record, name in ((CONTRACT, "record"), (SEED, "record")):
        result = native({**record, name: url})
        assert isinstance(result, Refused) and result.code == RECORDING_URL_INVALID
        assert result.message.startswith("record ")
    result = native({**CONTRACT, "recording_url": url})
    assert isinstance(result, Refused) and result.code == RECORDING_URL_INVALID
    assert result.message.startswith("recording_url ")


def test_two_different_recording_urls_are_refused() -> None:
    result = native({**CONTRACT, "record": URL, "recording_url": URL + "2"})
    assert isinstance(result, Refused) and result.code == RECORDING_URL_INVALID
    assert "differ" in result.message


def test_the_contract_checks_come_before_the_recording_url() -> None:
    result = native({**CONTRACT, "duration": -1, "record": "nope"})
    assert isinstance(result, Refused) and result.code == 50416


def _compat(**params: str) -> CdrSubmitted:
    base = {"originatingnumber": "100", "destinationnumber": "16135550100", "duration": "60"}
    return build_compat_event({**base, **params}, TENANT, now=NOW)


def test_the_compat_path_takes_record_and_recordingurl() -> None:
    assert _compat(record=URL).recording_url == URL
    assert _compat(recordingurl=URL).recording_url == URL
    assert _compat().recording_url is None and _compat(record="").recording_url is None
    with pytest.raises(Rejected) as refused:
        _compat(record="ftp://pbx.example.net/rec.mp3")
    assert refused.value.code == RECORDING_URL_INVALID
    assert "Record must be an http:// or https:// URL" in refused.value.message
    with pytest.raises(Rejected) as first:
        _compat(record="nope", duration="x")
    assert first.value.code == 50416


def _freeswitch(**variables: str) -> Parsed | Refused:
    cdr = json.loads((FIXTURES / "freeswitch_busy.json").read_bytes())
    cdr["variables"].update(variables)
    (result,) = parse_freeswitch(json.dumps(cdr).encode(), principal=TENANT, now=NOW)
    return result


def test_freeswitch_takes_the_record_or_recording_url_variable_percent_decoded() -> None:
    encoded = "https%3A%2F%2Fpbx.example.net%2Frec%2Fa%2520b.wav"
    assert taken(_freeswitch(recording_url=encoded)).recording_url == (
        "https://pbx.example.net/rec/a%20b.wav"
    )
    # mod_json_cdr encodes every value: the URL's own %20 arrives as %2520.
    assert taken(_freeswitch(record=quote(URL, safe=""))).recording_url == URL
    assert taken(_freeswitch()).recording_url is None
    bad = _freeswitch(recording_url="%2Fvar%2Flib%2Ffreeswitch%2Frecordings%2Fx.wav")
    assert isinstance(bad, Refused) and bad.code == RECORDING_URL_INVALID
    assert "variables.recording_url" in bad.message


def _asterisk(userfield: str) -> Parsed | Refused:
    line = (FIXTURES / "asterisk_17_userfield.csv").read_bytes().splitlines()[0]
    line = line.replace(b'"campaign=spring"', json.dumps(userfield).encode())
    (result,) = parse_asterisk(line, principal=TENANT, now=NOW)
    return result


def test_asterisk_takes_a_userfield_that_is_an_http_url() -> None:
    event = taken(_asterisk(URL))
    assert event.recording_url == URL and "userfield" not in event.extra
    plain = taken(_asterisk("campaign=spring"))
    assert plain.recording_url is None and plain.extra["userfield"] == "campaign=spring"
    bad = _asterisk("https://pbx.example.net/a b.wav")
    assert isinstance(bad, Refused) and bad.code == RECORDING_URL_INVALID
    assert "userfield" in bad.message


def test_the_event_refuses_a_bad_url_when_decoded() -> None:
    # What the rater does with a message: a URL that is not one is a rejected event.
    event = taken(native({**CONTRACT, "record": URL}))
    assert CdrSubmitted.model_validate_json(event.model_dump_json()).recording_url == URL
    raw = json.loads(event.model_dump_json())
    with pytest.raises(ValidationError):
        CdrSubmitted.model_validate({**raw, "recording_url": "javascript:alert(1)"})
    del raw["recording_url"]  # an event produced before the field existed
    assert CdrSubmitted.model_validate(raw).recording_url is None


@pytest.mark.parametrize("url", BAD_URLS)
def test_check_recording_url_says_why(url: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        check_recording_url(url)


def _row(**fields: Any) -> dict[str, Any]:
    return {
        "cdr_id": uuid.uuid4(),
        "database_id": "DB",
        "api_account": "ACC",
        "originating_number": "100",
        "destination_number": "16135550100",
        "duration": 60,
        "disposition": "ANSWERED",
        **fields,
    }


def test_the_record_shows_the_recording_as_record_only_when_there_is_one() -> None:
    assert render_record(_row(recording_url=URL))["record"] == URL
    assert "record" not in render_record(_row(recording_url=None))
    # A row stored before the column: its `extra` kept what the PBX sent.
    assert render_record(_row(extra={"record": URL}))["record"] == URL

"""`cdrflow submit` input: formats by name, Master.csv/NDJSON lines at byte positions, raw
mod_json_cdr documents, batches by count and by bytes, and resume from a position."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from cdr_ingest.submit_files import (
    Batch,
    InputError,
    InputFormat,
    Source,
    batches,
    detect_format,
    encode_body,
)

PBX = Path(__file__).resolve().parents[1] / "fixtures" / "pbx"
ASTERISK_FIXTURES = sorted(PBX.glob("asterisk_*.csv"))


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Master.csv", InputFormat.ASTERISK),
        ("calls.NDJSON", InputFormat.NDJSON),
        ("calls.jsonl", InputFormat.NDJSON),
        ("a_1234.cdr.json", InputFormat.FREESWITCH),
    ],
)
def test_the_format_follows_the_file_name(tmp_path: Path, name: str, expected: InputFormat) -> None:
    assert detect_format(tmp_path / name) is expected


def test_a_directory_is_freeswitch_and_an_unknown_suffix_asks_for_format(tmp_path: Path) -> None:
    assert detect_format(tmp_path) is InputFormat.FREESWITCH
    with pytest.raises(InputError, match="--format"):
        detect_format(tmp_path / "calls.txt")
    assert detect_format(tmp_path / "calls.txt", InputFormat.NDJSON) is InputFormat.NDJSON


def test_a_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        Source(tmp_path / "Master.csv", InputFormat.ASTERISK)


def test_a_directory_is_refused_for_line_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="freeswitch"):
        Source(tmp_path, InputFormat.ASTERISK)


@pytest.mark.parametrize("fixture", ASTERISK_FIXTURES, ids=lambda p: p.name)
def test_master_csv_variants_are_sent_as_their_own_bytes(fixture: Path) -> None:
    source = Source(fixture, InputFormat.ASTERISK)
    records = [record for record, _ in source.records()]
    assert records == _lines(fixture)
    assert source.unit == "bytes"
    assert source.total == fixture.stat().st_size


def test_bom_header_blank_lines_and_crlf_are_not_records(tmp_path: Path) -> None:
    body = _lines(PBX / "asterisk_16.csv")
    path = tmp_path / "Master.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + b'"accountcode","src","dst","dcontext"\r\n'
        + b"\r\n".join(body)
        + b"\r\n\r\n   \n"
    )
    records = list(Source(path, InputFormat.ASTERISK).records())
    assert [r for r, _ in records] == body
    assert records[-1][1] == path.stat().st_size - len(b"\r\n   \n")


def test_a_header_line_is_a_record_in_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'"accountcode,src,dst"\n{"a": 1}\n')
    assert [r for r, _ in Source(path, InputFormat.NDJSON).records()] == [
        b'"accountcode,src,dst"',
        b'{"a": 1}',
    ]


def _csv(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "Master.csv"
    with path.open("wb") as f:
        for i in range(count):
            f.write(
                f'"","1000","1613555{i:04d}","ctx","","","","","","2026-03-02 09:00:00",,,'.encode()
            )
            f.write(f'{i},{i},"ANSWERED","DOCUMENTATION"\n'.encode())
    return path


def test_batches_cover_contiguous_positions_and_every_record_once(tmp_path: Path) -> None:
    path = _csv(tmp_path, 25)
    source = Source(path, InputFormat.ASTERISK)
    cut = list(batches(source.records(), start=0, size=10))
    assert [len(b.records) for b in cut] == [10, 10, 5]
    assert cut[0].start == 0 and cut[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(cut))
    assert [r for b in cut for r in b.records] == _lines(path)


def test_reading_from_a_batch_boundary_yields_the_same_later_batches(tmp_path: Path) -> None:
    path = _csv(tmp_path, 25)
    source = Source(path, InputFormat.ASTERISK)
    whole = list(batches(source.records(), start=0, size=10))
    resumed = list(batches(source.records(whole[1].start), start=whole[1].start, size=10))
    assert [b.key for b in resumed] == [b.key for b in whole[1:]]
    assert [b.records for b in resumed] == [b.records for b in whole[1:]]


def test_a_batch_stays_under_the_byte_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    record = json.dumps({"originating_number": "100", "pad": "x" * 300}).encode()
    path.write_bytes((record + b"\n") * 10)
    limit = 3 * (len(record) + 1) + 2  # room for three records, not four
    source = Source(path, InputFormat.NDJSON)
    cut = list(batches(source.records(), start=0, size=100, max_bytes=limit))
    assert [len(b.records) for b in cut] == [3, 3, 3, 1]
    assert all(len(encode_body(InputFormat.NDJSON, b.records)) <= limit for b in cut)
    cut = list(batches(source.records(), start=0, size=100, max_bytes=limit - 1))
    assert [len(b.records) for b in cut] == [2, 2, 2, 2, 2]


def test_a_record_larger_than_the_limit_goes_alone(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    path.write_bytes(b'{"a": 1}\n' + b'{"pad": "' + b"x" * 2000 + b'"}\n' + b'{"b": 2}\n')
    cut = list(
        batches(Source(path, InputFormat.NDJSON).records(), start=0, size=100, max_bytes=100)
    )
    assert [len(b.records) for b in cut] == [1, 1, 1]


def test_the_batch_size_is_capped_at_the_servers_record_limit(tmp_path: Path) -> None:
    path = tmp_path / "many.ndjson"
    path.write_bytes(b"{}\n" * 10_001)
    cut = list(batches(Source(path, InputFormat.NDJSON).records(), start=0, size=50_000))
    assert [len(b.records) for b in cut] == [10_000, 1]


def test_bodies_are_lines_or_a_json_array_of_the_raw_documents() -> None:
    docs = [b'{"callflow": 1, "callflow": 2}', b'{"x": 3}']
    assert encode_body(InputFormat.FREESWITCH, docs) == b'[{"callflow": 1, "callflow": 2},{"x": 3}]'
    assert encode_body(InputFormat.ASTERISK, [b"a", b"b"]) == b"a\nb\n"


def test_a_freeswitch_document_keeps_its_repeated_callflow_keys() -> None:
    path = PBX / "freeswitch_repeated_callflow.json"
    source = Source(path, InputFormat.FREESWITCH)
    [(record, position)] = list(source.records())
    assert record == path.read_bytes().strip()
    assert record.count(b'"callflow"') >= 2
    assert position == 1 and source.total == 1 and source.unit == "documents"


def test_a_freeswitch_array_and_a_stream_of_documents_split_into_documents(tmp_path: Path) -> None:
    a = (PBX / "freeswitch_bridge_a_leg.json").read_bytes().strip()
    b = (PBX / "freeswitch_busy.json").read_bytes().strip()
    array = tmp_path / "export.json"
    array.write_bytes(b"[\n" + a + b" ,\n" + b + b"\n]\n")
    stream = tmp_path / "stream.json"
    stream.write_bytes(a + b"\n" + b + b"\n")
    for path in (array, stream):
        assert [r for r, _ in Source(path, InputFormat.FREESWITCH).records()] == [a, b]
    empty = tmp_path / "empty.json"
    empty.write_bytes(b" [ ] ")
    assert list(Source(empty, InputFormat.FREESWITCH).records()) == []


def test_a_directory_of_mod_json_cdr_files_is_one_position_per_file(tmp_path: Path) -> None:
    for fixture in sorted(PBX.glob("freeswitch_*.json")):
        shutil.copy(fixture, tmp_path / fixture.name)
    (tmp_path / "notes.txt").write_text("not a cdr")
    source = Source(tmp_path, InputFormat.FREESWITCH)
    assert source.total == 4 and source.unit == "files"
    records = list(source.records(2))
    assert [p for _, p in records] == [3, 4]
    assert records[0][0] == (PBX / "freeswitch_busy.json").read_bytes().strip()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": ', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'[{"a": 1} {"b": 2}]', "expected ','"),
    ],
)
def test_an_unreadable_document_is_refused_locally_not_sent(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(body)
    cut = list(batches(Source(path, InputFormat.FREESWITCH).records(), start=0, size=10))
    assert len(cut) == 1
    assert all(b'"b"' not in r for r in cut[0].records)
    assert len(cut[0].refused) == 1 and reason in cut[0].refused[0]
    assert "bad.json" in cut[0].refused[0]


def test_batch_key_is_its_range() -> None:
    assert Batch(3, 9).key == (3, 9)

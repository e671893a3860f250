"""The resume file: out-of-order batches, atomic saves, and refusing another input's state."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from cdr_ingest.submit_files import InputFormat, Source
from cdr_ingest.submit_state import StateError, SubmitState, default_state_path


def _source(tmp_path: Path, body: bytes = b'{"a": 1}\n{"b": 2}\n') -> Source:
    path = tmp_path / "calls.ndjson"
    path.write_bytes(body)
    return Source(path, InputFormat.NDJSON)


def test_the_default_state_file_sits_beside_the_input(tmp_path: Path) -> None:
    assert default_state_path(tmp_path / "Master.csv") == tmp_path / "Master.csv.cdrflow-state"


def test_batches_finished_out_of_order_advance_the_watermark_when_contiguous(
    tmp_path: Path,
) -> None:
    state = SubmitState.open(tmp_path / "s", _source(tmp_path), restart=False)
    state.finish((10, 20), Counter({0: 3}))
    state.finish((20, 30), Counter({50421: 1}))
    assert state.watermark == 0 and state.is_done((10, 20)) and not state.is_done((0, 10))
    assert state.completed == 20
    state.finish((0, 10), Counter({0: 2, 50416: 1}))
    assert state.watermark == 30 and state.done == {}
    assert state.is_done((0, 10)) and state.is_done((20, 30))
    assert state.records == 7 and state.counts == Counter({0: 5, 50421: 1, 50416: 1})


def test_a_saved_state_is_read_back_and_marked_resumed(tmp_path: Path) -> None:
    source = _source(tmp_path)
    state = SubmitState.open(tmp_path / "s", source, restart=False)
    assert not state.resumed
    state.finish((0, 9), Counter({0: 1}))
    state.finish((12, 18), Counter({50460: 1}))
    state.save()
    assert not (tmp_path / "s.tmp").exists()
    again = SubmitState.open(tmp_path / "s", source, restart=False)
    assert again.resumed
    assert (again.watermark, again.done, again.counts) == (9, {12: 18}, state.counts)
    assert SubmitState.open(tmp_path / "s", source, restart=True).watermark == 0


def test_a_save_replaces_the_file_whole(tmp_path: Path) -> None:
    source = _source(tmp_path)
    state = SubmitState.open(tmp_path / "s", source, restart=False)
    state.save()
    before = os.stat(tmp_path / "s").st_ino
    state.finish((0, 9), Counter({0: 1}))
    state.save()
    assert os.stat(tmp_path / "s").st_ino != before  # renamed into place, not rewritten
    assert json.loads((tmp_path / "s").read_text())["watermark"] == 9


def test_a_grown_file_still_matches_its_state(tmp_path: Path) -> None:
    source = _source(tmp_path)
    state = SubmitState.open(tmp_path / "s", source, restart=False)
    state.finish((0, 18), Counter({0: 2}))
    state.save()
    with source.path.open("ab") as f:
        f.write(b'{"c": 3}\n')
    assert SubmitState.open(tmp_path / "s", source, restart=False).watermark == 18


def test_another_input_is_not_skipped_by_mistake(tmp_path: Path) -> None:
    source = _source(tmp_path)
    state = SubmitState.open(tmp_path / "s", source, restart=False)
    state.finish((0, 9), Counter({0: 1}))
    state.save()
    changed = _source(tmp_path, b'{"x": 9}\n{"b": 2}\n')
    with pytest.raises(StateError, match="different input"):
        SubmitState.open(tmp_path / "s", changed, restart=False)
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    moved = _source(elsewhere)
    with pytest.raises(StateError, match="different input"):
        SubmitState.open(tmp_path / "s", moved, restart=False)
    as_csv = Source(source.path, InputFormat.ASTERISK)
    with pytest.raises(StateError, match="ndjson input"):
        SubmitState.open(tmp_path / "s", as_csv, restart=False)


def test_a_directory_state_needs_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    source = Source(tmp_path, InputFormat.FREESWITCH)
    SubmitState.open(tmp_path / "s", source, restart=False).save()
    assert SubmitState.open(
        tmp_path / "s", Source(tmp_path, InputFormat.FREESWITCH), restart=False
    ).resumed
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(StateError, match="different input"):
        SubmitState.open(tmp_path / "s", Source(tmp_path, InputFormat.FREESWITCH), restart=False)


def test_an_unreadable_state_file_says_how_to_start_over(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("{not json")
    with pytest.raises(StateError, match="--restart"):
        SubmitState.open(tmp_path / "s", _source(tmp_path), restart=False)
    assert not SubmitState.open(tmp_path / "s", _source(tmp_path), restart=True).resumed

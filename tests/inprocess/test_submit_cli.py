"""`cdrflow submit` against a stand-in ingest on loopback: retries of 503 and of per-record
50503, final codes counted, credentials and unreachable servers named, Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdr_ingest.submit_cli import submit
from cdr_ingest.submit_client import MAX_RETRY_AFTER, retry_after_seconds
from cdrflow_dev.infra import free_port
from tests.submit_stub import StubIngest, summary_counts

PBX = Path(__file__).resolve().parents[1] / "fixtures" / "pbx"
OPTIONS = (
    "--database --account --url --password-env --format --tz --batch-size --concurrency "
    "--state --restart --retries --timeout --no-progress"
).split()

app = typer.Typer(add_completion=False)
app.command()(submit)
runner = CliRunner()


def _master_csv(path: Path, count: int, *, bad: int = 0) -> list[bytes]:
    lines = [
        f'"","1000","1613555{i:04d}","ctx","","","","","","2026-03-02 09:00:00",,,'
        f'{i},{"BAD" if i < bad else i},"ANSWERED","DOCUMENTATION"'.encode()
        for i in range(count)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def _invoke(stub: StubIngest, *args: str, password: str = "pw") -> tuple[int, str]:
    done = runner.invoke(
        app,
        [*args, "--url", stub.url, "--database", "DB", "--account", "ACC"],
        env={"CDR_SUBMIT_PASSWORD": password, "COLUMNS": "200"},
    )
    return done.exit_code, done.output


def test_help_explains_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cdrmodel.cli", "submit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    for option in OPTIONS:
        assert re.search(rf"{option}\s+\S.*\S", done.stdout), option
    assert "stored twice" in done.stdout  # the keyless-NDJSON caveat
    assert "ps" in done.stdout  # why there is no --password


def test_every_record_is_answered_once_through_503_and_per_record_50503(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Master.csv"
    lines = _master_csv(path, 25, bad=2)
    with StubIngest() as stub:
        stub.failures = [(503, "1", None), (502, "soon", "<html>Bad Gateway</html>")]
        stub.unavailable_once = {lines[5], lines[6], lines[20]}
        code, output = _invoke(stub, str(path), "--batch-size", "4", "--concurrency", "3")
    assert code == 1, output  # two records refused
    assert summary_counts(output) == {"0": 23, "50416": 2}
    assert "not a whole number" in output  # the server's message for a refused code
    assert "in 1.0s: HTTP 503 Kafka unreachable" in output  # Retry-After honoured
    assert "records answered 50503" in output
    assert "HTTP 502 <html>Bad Gateway</html>" in output  # a proxy's page, not JSON
    assert set(stub.stored) == set(lines[2:]) and set(stub.stored.values()) == {1}
    assert stub.answers[50503] == 3 and stub.paths["/v1/pbx/asterisk"] == 7 + 2 + 2
    state = json.loads((tmp_path / "Master.csv.cdrflow-state").read_text())
    assert state["watermark"] == path.stat().st_size and state["done"] == []


def test_a_finished_file_sends_only_appended_lines_and_restart_sends_all(tmp_path: Path) -> None:
    path = tmp_path / "Master[old].csv"  # brackets are text, not rich markup
    lines = _master_csv(path, 10)
    with StubIngest() as stub:
        assert _invoke(stub, str(path), "--batch-size", "3")[0] == 0
        again, output = _invoke(stub, str(path), "--batch-size", "3")
        assert again == 0 and stub.answers == {0: 10}
        assert "resuming Master[old].csv" in output and summary_counts(output) == {"0": 10}
        with path.open("ab") as f:
            f.write(
                b'"","1000","16135559999","ctx","","","","","","2026-03-02",,,1,1,"ANSWERED","X"\n'
            )
        assert _invoke(stub, str(path))[0] == 0
        assert stub.answers == {0: 11}
        code, output = _invoke(stub, str(path), "--restart")
    assert code == 0 and summary_counts(output) == {"50421": 11}
    assert set(stub.stored) >= set(lines) and set(stub.stored.values()) == {1}


def test_a_body_refused_whole_counts_its_records_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "calls.ndjson"
    path.write_text('{"n": 1}\n{"n": "HUGE"}\n{"n": 3}\n')
    with StubIngest() as stub:
        code, output = _invoke(stub, str(path), "--batch-size", "2")
    assert code == 1
    assert summary_counts(output) == {"0": 1, "413": 2} and "body over 10 MiB" in output
    assert stub.paths["/v1/cdrs"] == 2


def test_freeswitch_files_go_as_one_array_per_batch(tmp_path: Path) -> None:
    directory = tmp_path / "json_cdr"
    directory.mkdir()
    for fixture in PBX.glob("freeswitch_*.json"):
        (directory / fixture.name).write_bytes(fixture.read_bytes())
    (directory / "broken.json").write_text('{"variables": ')
    with StubIngest() as stub:
        code, output = _invoke(stub, str(directory), "--batch-size", "10")
    assert code == 1  # the unreadable file
    assert summary_counts(output) == {"0": 4, "50400": 1} and "broken.json: not JSON" in output
    assert stub.paths == {"/v1/pbx/freeswitch": 1}
    assert (tmp_path / "json_cdr.cdrflow-state").exists()


def test_an_answer_that_does_not_match_the_request_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 5)
    with StubIngest(short_results=True) as stub:
        code, output = _invoke(stub, str(path))
    assert code == 3 and "answered 5 records with 4 results" in output
    assert not json.loads((tmp_path / "Master.csv.cdrflow-state").read_text())["watermark"]


def test_a_url_that_is_not_an_ingest_stops_without_marking_anything_done(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 5)
    with StubIngest() as stub:
        done = runner.invoke(
            app,
            [str(path), "--url", f"{stub.url}/other", "--database", "DB", "--account", "ACC"],
            env={"CDR_SUBMIT_PASSWORD": "pw", "COLUMNS": "200"},
        )
    assert done.exit_code == 3
    assert "answered HTTP 404 404: Not Found; is --url an ingest service?" in done.output
    state = json.loads((tmp_path / "Master.csv.cdrflow-state").read_text())
    assert state["watermark"] == 0 and state["counts"] == {}


def test_a_state_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 5)
    with StubIngest() as stub:
        code, output = _invoke(stub, str(path), "--state", str(tmp_path / "no" / "such" / "s"))
    assert code == 2 and "No such file or directory" in output
    assert stub.paths == {}


def test_a_wrong_password_stops_with_the_servers_message(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 5)
    with StubIngest() as stub:
        code, output = _invoke(stub, str(path), password="wrong")
    assert code == 2 and "refused the credentials: APIPassword wrong" in output
    assert stub.stored == {}


def test_an_unreachable_server_stops_after_the_retries_with_progress_saved(
    tmp_path: Path,
) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 3)
    done = runner.invoke(
        app,
        [str(path), "--url", f"http://127.0.0.1:{free_port()}", "--retries", "1"],
        env={
            "CDR_SUBMIT_PASSWORD": "pw",
            "CDR_SUBMIT_DATABASE": "D",
            "CDR_SUBMIT_ACCOUNT": "A",
            "COLUMNS": "200",
        },
    )
    assert done.exit_code == 3, done.output
    assert "still failing after 1 retries" in done.output
    assert "Cannot connect" in done.output and "[Connect call failed" in done.output
    assert "run the same command to resume" in done.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["nowhere.csv"], {}, "no such file"),
        (["calls.txt"], {}, "--format"),
        (["Master.csv"], {"CDR_SUBMIT_PASSWORD": ""}, "no password: set CDR_SUBMIT_PASSWORD"),
        (["Master.csv", "--tz", "Europe/Paris", "--format", "ndjson"], {}, "--tz applies"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    _master_csv(tmp_path / "Master.csv", 1)
    (tmp_path / "calls.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(
        app,
        [*args, "--database", "D", "--account", "A"],
        env={"CDR_SUBMIT_PASSWORD": "pw", "COLUMNS": "200", **env},
    )
    assert done.exit_code == 2
    assert message in done.output


def test_interrupted_then_resumed_every_record_once(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    lines = _master_csv(path, 400)
    state_file = tmp_path / "Master.csv.cdrflow-state"
    command = [sys.executable, "-m", "cdrmodel.cli", "submit", str(path), "--batch-size", "5"]
    with StubIngest(delay=0.02) as stub:
        env = {
            **os.environ,
            "CDR_SUBMIT_PASSWORD": "pw",
            "CDR_SUBMIT_URL": stub.url,
            "CDR_SUBMIT_DATABASE": "DB",
            "CDR_SUBMIT_ACCOUNT": "ACC",
        }
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (state_file.exists() and json.loads(state_file.read_text())["watermark"]):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
        assert b"run the same command to resume" in err
        sent_first = sum(stub.stored.values())
        assert 0 < sent_first < len(lines)
        second = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert b"resuming" in second.stderr
    assert set(stub.stored) == set(lines) and set(stub.stored.values()) == {1}
    counts = summary_counts(second.stdout.decode())
    assert counts.get("0", 0) + counts.get("50421", 0) == len(lines)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("2", 2.0), ("-5", 0.0), ("99999", MAX_RETRY_AFTER), ("Wed, 21 Oct", None)],
)
def test_retry_after_is_read_as_bounded_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def _start(path: Path, stub: StubIngest, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CDR_SUBMIT_PASSWORD": "pw",
        "CDR_SUBMIT_URL": stub.url,
        "CDR_SUBMIT_DATABASE": "DB",
        "CDR_SUBMIT_ACCOUNT": "ACC",
    }
    command = [sys.executable, "-m", "cdrmodel.cli", "submit", str(path), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_requests(stub: StubIngest, process: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 60
    while sum(stub.paths.values()) < count:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)


def _wait_for_output(process: subprocess.Popen[bytes], text: bytes) -> None:
    """Read stderr until `text` appears (the command says it is stopping)."""
    assert process.stderr is not None
    seen = b""
    while text not in seen:
        chunk = process.stderr.read1(4096)
        assert chunk, seen
        seen += chunk


def test_ctrl_c_waits_for_the_answers_in_flight_and_saves_them(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 40)
    with StubIngest(delay=1.0) as stub:
        process = _start(path, stub, "--batch-size", "10", "--concurrency", "2")
        _wait_for_requests(stub, process, 2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert b"waiting for the answers in flight" in err
    state = json.loads((tmp_path / "Master.csv.cdrflow-state").read_text())
    assert state["counts"] == {"0": 20}  # both batches in flight were answered and saved
    assert sum(stub.stored.values()) == 20


def test_a_second_ctrl_c_stops_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    _master_csv(path, 40)
    with StubIngest(delay=30.0) as stub:
        process = _start(path, stub, "--batch-size", "10")
        _wait_for_requests(stub, process, 1)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _wait_for_output(process, b"Ctrl-C again")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 130
    assert time.monotonic() - started < 20  # neither the 30 s answer nor the grace awaited
    state = json.loads((tmp_path / "Master.csv.cdrflow-state").read_text())
    assert state["watermark"] == 0 and state["counts"] == {}

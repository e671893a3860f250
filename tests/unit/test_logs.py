"""Log output: JSON lines (or console text) from stdlib and structlog loggers alike."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson
import pytest

from cdrmodel.settings import CommonSettings

# Run in a child process: configure_logging replaces the root handler, which would steal
# pytest's own log capture for the rest of the session.
PROGRAM = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from cdrmodel.logs import configure_logging

    configure_logging("info", service="cdr_test", fmt=sys.argv[1])
    log = logging.getLogger("cdr_test.module")
    log.info("stored %d records", 3)
    log.debug("not shown at info")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("batch failed")
    log.warning("login refused", extra={"database_id": "DB1", "password": "hunter2"})
    structlog.get_logger("cdr_test.structured").info(
        "push sent", status=200, webhook_secret="whsec_abc"
    )
    try:
        raise OSError("cannot reach postgresql+asyncpg://app:dbpw-1@db:5432/cdrflow")
    except OSError:
        log.exception("connect failed to %s", "https://crm:urlpw-2@crm.example/hook")
    log.error("GET /api_submitcdr.aspx?DatabaseID=D&APIPassword=qpw-3&Duration=9 failed")
    """
)


def run(fmt: str) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return done.stdout, done.stderr


def test_json_format_is_one_object_a_line_with_traceback() -> None:
    stdout, stderr = run("json")
    assert stdout == ""
    lines = [orjson.loads(line) for line in stderr.splitlines()]
    assert [line["event"] for line in lines] == [
        "stored 3 records",
        "batch failed",
        "login refused",
        "push sent",
        "connect failed to https://crm:[redacted]@crm.example/hook",
        "GET /api_submitcdr.aspx?DatabaseID=D&APIPassword=[redacted]&Duration=9 failed",
    ]
    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= line.keys()
        assert line["timestamp"].endswith("Z")
    stored, failed, refused, pushed, connect, query = lines
    assert query["level"] == "error"
    assert "postgresql+asyncpg://app:[redacted]@db:5432/cdrflow" in connect["exception"]
    assert (stored["level"], stored["logger"]) == ("info", "cdr_test.module")
    assert failed["level"] == "error"
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in failed["exception"]
    assert "exception" not in stored
    assert refused["database_id"] == "DB1"
    assert (pushed["logger"], pushed["status"]) == ("cdr_test.structured", 200)


def test_secrets_never_reach_a_log_line() -> None:
    for fmt in ("json", "console"):
        _stdout, stderr = run(fmt)
        assert "hunter2" not in stderr and "whsec_abc" not in stderr
        if fmt == "json":  # the console renders tracebacks as they are, for people
            assert "dbpw-1" not in stderr
        assert "urlpw-2" not in stderr and "qpw-3" not in stderr
        assert "[redacted]" in stderr


def test_console_format_is_text_for_people() -> None:
    _stdout, stderr = run("console")
    assert not stderr.lstrip().startswith("{")
    lines = stderr.splitlines()
    assert any("stored 3 records" in line and "cdr_test.module" in line for line in lines)
    assert any("push sent" in line and "status=200" in line for line in lines)
    assert "ZeroDivisionError" in stderr and "not shown at info" not in stderr


@pytest.mark.parametrize(("value", "expected"), [(None, "json"), ("console", "console")])
def test_log_format_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    monkeypatch.setenv("CDR_ADMIN_TOKEN", "x" * 16)
    if value is None:
        monkeypatch.delenv("CDR_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("CDR_LOG_FORMAT", value)
    assert CommonSettings().log_format == expected  # type: ignore[call-arg]


def test_an_unknown_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_ADMIN_TOKEN", "x" * 16)
    monkeypatch.setenv("CDR_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        CommonSettings()  # type: ignore[call-arg]

"""Settings fail fast, naming the bad variable."""

from __future__ import annotations

import pytest

from cdr_ingest.settings import IngestSettings
from cdr_notifier.settings import NotifierSettings
from cdrmodel.settings import load_settings


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        (IngestSettings, "CDR_INGEST_PORT", "not-a-port"),
        (IngestSettings, "CDR_DATABASE_URL", "mysql://nope"),
        (NotifierSettings, "CDR_ALLOW_PRIVATE_WEBHOOKS", "perhaps"),
        (NotifierSettings, "CDR_PUSH_CONCURRENCY", "0"),
        (NotifierSettings, "CDR_ROLE", "both"),
    ],
)
def test_bad_setting_exits_naming_the_variable(
    cls: type,
    variable: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CDR_ADMIN_TOKEN", "a-long-enough-token")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(cls)
    assert exc.value.code == 2
    assert f"invalid setting {variable}:" in capsys.readouterr().err


def test_admin_token_has_no_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CDR_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        load_settings(IngestSettings)
    assert "invalid setting CDR_ADMIN_TOKEN:" in capsys.readouterr().err


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_ADMIN_TOKEN", "a-long-enough-token")
    monkeypatch.setenv("CDR_INGEST_PORT", "9999")
    settings = load_settings(IngestSettings)
    assert settings.port == 9999 and settings.database_url.startswith("postgresql")


def test_role_defaults_to_all_and_is_read_from_cdr_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_ADMIN_TOKEN", "a-long-enough-token")
    default = load_settings(IngestSettings)
    assert (default.role, default.runs_api, default.runs_workers) == ("all", True, True)
    monkeypatch.setenv("CDR_ROLE", "worker")
    worker = load_settings(NotifierSettings)
    assert (worker.role, worker.runs_api, worker.runs_workers) == ("worker", False, True)

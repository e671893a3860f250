"""The `cdrflow` command: product commands always, plugin commands (`dev`) only where installed;
the product never imports the dev package; `serve` finds each service by its entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdrflow_dev.launcher import dev_defaults
from cdrmodel import cli
from cdrmodel.cli import PLUGIN_GROUP, SERVICE_GROUP, add_plugin_commands, app, migrate, topics

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_SOURCES = [ROOT / "libs/cdrmodel/src", *sorted((ROOT / "services").glob("*/src"))]


def _product_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    app.command()(migrate)
    app.command()(topics)
    return app


def _plugin(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=PLUGIN_GROUP)


def test_cdrflow_help_lists_dev_when_the_dev_package_is_installed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cdrmodel.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    commands = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("│ ")}
    assert {"migrate", "topics", "dev"} <= commands


def test_a_plugin_whose_package_is_not_installed_is_left_out() -> None:
    app = _product_app()
    added = add_plugin_commands(app, [_plugin("dev", "cdrflow_dev_not_installed.cli:dev")])
    assert added == []
    result = CliRunner().invoke(app, ["dev"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_a_plugin_missing_one_of_its_dependencies_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cdrflow_broken_plugin.py").write_text(
        "import cdrflow_no_such_dependency\n\ndef cmd() -> None: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="cdrflow_no_such_dependency"):
        add_plugin_commands(_product_app(), [_plugin("broken", "cdrflow_broken_plugin:cmd")])


def test_an_installed_plugin_runs_as_a_command_and_cannot_replace_a_product_command() -> None:
    app = _product_app()
    added = add_plugin_commands(
        app,
        [
            _plugin("dev", "cdrflow_dev.cli:dev"),
            _plugin("migrate", "cdrflow_dev.cli:dev"),  # the product's migrate stays
        ],
    )
    assert added == ["dev"]
    result = CliRunner().invoke(app, ["dev", "--help"])
    assert result.exit_code == 0, result.output
    assert "--no-demo" in result.output
    result = CliRunner().invoke(app, ["migrate", "--help"])
    assert "latest schema" in result.output


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_service_and_no_shared_module_imports_the_dev_package() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for src in PRODUCT_SOURCES
        for path in src.rglob("*.py")
        for name in _imported_modules(path)
        if name == "cdrflow_dev" or name.startswith("cdrflow_dev.")
    ]
    assert len(PRODUCT_SOURCES) == 4
    assert offenders == []


def test_starting_the_services_loads_nothing_from_the_dev_package() -> None:
    probe = (
        "import sys, cdr_ingest.__main__, cdr_rater.__main__, cdr_notifier.__main__;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cdrflow_dev'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_dev_gives_services_console_logs_unless_the_user_chose_a_format() -> None:
    assert dev_defaults({})["CDR_LOG_FORMAT"] == "console"
    assert dev_defaults({"CDR_LOG_FORMAT": "json"})["CDR_LOG_FORMAT"] == "json"
    assert dev_defaults({"CDR_ADMIN_TOKEN": "mine-and-long"})["CDR_ADMIN_TOKEN"] == "mine-and-long"


SERVED: list[str | None] = []


def _record_serve(role: str | None = None) -> None:
    """Stands in for a service's `main(role=...)` in the serve tests."""
    SERVED.append(role)


def test_serve_help_names_the_services_and_the_roles() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "ingest|rater|notifier" in result.output
    assert "api|worker|all" in result.output
    assert "CDR_ROLE" in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["serve"], "Missing argument"),
        (["serve", "billing"], "'billing' is not one of"),
        (["serve", "rater", "--role", "both"], "'both' is not one of"),
    ],
)
def test_serve_refuses_a_missing_or_unknown_service_or_role(
    args: list[str], complaint: str
) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert complaint in " ".join(result.output.split()).replace("│", "")


@pytest.mark.parametrize(("args", "role"), [([], None), (["--role", "worker"], "worker")])
def test_serve_runs_the_service_entry_point_with_the_chosen_role(
    monkeypatch: pytest.MonkeyPatch, args: list[str], role: str | None
) -> None:
    fake = EntryPoint(name="rater", value=f"{__name__}:_record_serve", group=SERVICE_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [fake] if group == SERVICE_GROUP else [])
    SERVED.clear()
    result = CliRunner().invoke(app, ["serve", "rater", *args])
    assert result.exit_code == 0, result.output
    assert SERVED == [role]  # None: the service reads CDR_ROLE (default all) itself


def test_serve_of_a_service_not_installed_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    result = CliRunner().invoke(app, ["serve", "notifier"])
    assert result.exit_code == 1
    assert "service notifier is not installed" in result.output


def test_each_service_is_installed_as_a_serve_entry_point() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group=SERVICE_GROUP)}
    assert installed == {s: f"cdr_{s}.__main__:main" for s in ("ingest", "rater", "notifier")}

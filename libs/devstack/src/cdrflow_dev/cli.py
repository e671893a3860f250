"""`cdrflow dev`: registered on the `cdrflow` command through the `cdrflow.commands` entry point."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer


def _show_infra_log() -> None:
    # The infra module logs every change it makes outside its data directory (as root: the
    # system user, permissions); under `cdrflow dev` a person must see those lines.
    logger = logging.getLogger("cdrflow_dev")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("cdrflow dev: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def dev(
    data_dir: Annotated[Path, typer.Option(help="Where embedded PostgreSQL keeps its data")] = Path(
        ".data"
    ),
    demo: Annotated[bool, typer.Option(help="Load the demo tenant")] = True,
) -> None:
    """Run the whole system here: embedded PostgreSQL and Tansu (unless CDR_DATABASE_URL /
    CDR_KAFKA_BOOTSTRAP are set), migrations, topics, the demo tenant, and the three services.
    Ctrl-C or SIGTERM stops everything it started."""
    from cdrflow_dev.launcher import DevLauncher

    _show_infra_log()
    launcher = DevLauncher(data_dir=data_dir.resolve(), load_demo=demo)

    def on_signal(signum: int, _frame: object) -> None:
        launcher.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
        launcher.wait()
    except Exception as exc:
        # Whatever failed (a port, a migration, the demo load), stop what was started first.
        launcher.shutdown()
        typer.secho(f"cdrflow dev: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    launcher.shutdown()
    if launcher.exit_code:
        raise typer.Exit(launcher.exit_code)

"""The `cdrflow` command: `dev` (the whole system on one machine), `migrate`, `topics`."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="cdrflow: call-detail records from PBX to CRM.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _database_url() -> str:
    url = os.environ.get("CDR_DATABASE_URL")
    if not url:
        raise _fail("CDR_DATABASE_URL is not set")
    return url


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Alembic revision")] = "head",
) -> None:
    """Bring the database named by CDR_DATABASE_URL to the latest schema."""
    from cdrmodel.migrate import upgrade

    try:
        upgrade(_database_url(), revision)
    except (OSError, ConnectionError) as exc:
        raise _fail(f"PostgreSQL unreachable: {exc}") from None
    typer.echo("database migrated")


@app.command()
def topics() -> None:
    """Create the missing Kafka topics (CDR_KAFKA_BOOTSTRAP, CDR_TOPIC_NAMESPACE,
    CDR_KAFKA_PARTITIONS, CDR_KAFKA_REPLICATION)."""
    from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
    from cdrmodel.settings import CommonSettings, load_settings

    settings = load_settings(CommonSettings)
    names = [topic_name(t, settings.topic_namespace) for t in ALL_TOPICS]
    try:
        asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap,
                names,
                partitions=settings.kafka_partitions,
                replication=settings.kafka_replication,
            )
        )
    except Exception as exc:
        raise _fail(f"creating topics on {settings.kafka_bootstrap} failed: {exc}") from None
    typer.echo(f"topics ready: {', '.join(names)}")


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="Where embedded PostgreSQL keeps its data")] = Path(
        ".data"
    ),
    demo: Annotated[bool, typer.Option(help="Load the demo tenant")] = True,
) -> None:
    """Run the whole system here: embedded PostgreSQL and Tansu (unless CDR_DATABASE_URL /
    CDR_KAFKA_BOOTSTRAP are set), migrations, topics, the demo tenant, and the three services.
    Ctrl-C or SIGTERM stops everything it started."""
    from cdrmodel.launcher import DevLauncher

    launcher = DevLauncher(data_dir=data_dir.resolve(), load_demo=demo)

    def on_signal(signum: int, _frame: object) -> None:
        launcher.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
        launcher.wait()
    except Exception as exc:
        launcher.shutdown()
        raise _fail(f"cdrflow dev: {exc}") from None
    launcher.shutdown()
    code = launcher.exit_code
    if code:
        raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

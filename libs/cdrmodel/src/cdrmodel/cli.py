"""The `cdrflow` command: the product's `migrate` and `topics`, plus installed plugin commands."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated

import typer

# Other packages add commands here (cdrflow_dev adds `dev`). The product never imports them, so
# an image built without such a package simply has no such command.
PLUGIN_GROUP = "cdrflow.commands"

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


def _command_names(target: typer.Typer) -> set[str]:
    names = {
        c.name or (c.callback.__name__ if c.callback else "") for c in target.registered_commands
    }
    return names | {g.name or "" for g in target.registered_groups}


def add_plugin_commands(
    target: typer.Typer, plugins: Iterable[EntryPoint] | None = None
) -> list[str]:
    """Register each entry point of PLUGIN_GROUP (a function or a Typer app) as a command.

    A plugin whose own module is not installed is left out; a name the product already uses
    keeps the product's command. Returns the names added."""
    if plugins is None:
        plugins = entry_points(group=PLUGIN_GROUP)
    taken = _command_names(target)
    added: list[str] = []
    for plugin in sorted(plugins, key=lambda ep: ep.name):
        if plugin.name in taken:
            continue
        try:
            command = plugin.load()
        except ModuleNotFoundError as exc:
            # Only the plugin itself missing is expected; a plugin missing a dependency is broken.
            missing = exc.name or ""
            if plugin.module == missing or plugin.module.startswith(missing + "."):
                continue
            raise
        if isinstance(command, typer.Typer):
            target.add_typer(command, name=plugin.name)
        else:
            target.command(name=plugin.name)(command)
        taken.add(plugin.name)
        added.append(plugin.name)
    return added


def main() -> None:
    add_plugin_commands(app)
    app()


if __name__ == "__main__":
    main()

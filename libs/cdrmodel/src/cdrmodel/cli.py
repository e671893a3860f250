"""The `cdrflow` command: the product's `serve`, `migrate` and `topics`, plus installed plugin
commands."""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated

import typer

# Other packages add commands here (cdrflow_dev adds `dev`). The product never imports them, so
# an image built without such a package simply has no such command.
PLUGIN_GROUP = "cdrflow.commands"
# Each service's `main(role=...)`, by name: cdrmodel imports no service, it looks them up here.
SERVICE_GROUP = "cdrflow.services"

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


class Service(enum.StrEnum):
    ingest = "ingest"
    rater = "rater"
    notifier = "notifier"


class RoleOption(enum.StrEnum):  # cdrmodel.settings.Role, as choices typer can list
    api = "api"
    worker = "worker"
    all = "all"


@app.command()
def serve(
    service: Annotated[Service, typer.Argument(help="The service to run.")],
    role: Annotated[
        RoleOption | None,
        typer.Option(
            help="api: the HTTP routes, no consumer or worker loops; worker: the loops, with "
            "only /healthz, /readyz and /metrics; all: both. Default: CDR_ROLE, else all.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one service (settings from CDR_* variables), as `python -m cdr_<service>` does."""
    found = [ep for ep in entry_points(group=SERVICE_GROUP) if ep.name == service.value]
    if not found:
        raise _fail(f"service {service.value} is not installed (no {SERVICE_GROUP} entry point)")
    found[0].load()(role=role.value if role else None)


def _wait_for_head(url: str, wait: float) -> None:
    import asyncpg

    from cdrmodel.migrate import at_head

    deadline = time.monotonic() + wait
    while True:
        try:
            if at_head(url):
                typer.echo("database schema is current")
                return
            problem = "database schema is not current: run `cdrflow migrate`"
        except (TimeoutError, OSError) as exc:
            problem = f"PostgreSQL unreachable: {exc}"
        except asyncpg.PostgresError as exc:  # starting up, no such database, no access
            problem = f"PostgreSQL refused: {exc}"
        if time.monotonic() >= deadline:
            raise _fail(problem)
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Alembic revision")] = "head",
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing: exit 0 if the schema is current, else 1."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="With --check: seconds to keep checking before giving up (init "
            "containers wait so for the migrate Job).",
        ),
    ] = 0.0,
) -> None:
    """Bring the database named by CDR_DATABASE_URL to the latest schema."""
    if check:
        _wait_for_head(_database_url(), wait)
        return
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

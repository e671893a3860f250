"""`cdrflow dev`: start (and stop) everything a laptop needs, in order, naming what failed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

import typer

from cdrflow_dev.infra import EmbeddedPostgres, InfraError, Tansu, port_is_free
from cdrflow_dev.processes import SERVICES, ServiceFailed, ServiceProcess

PG_PORT_VAR, PG_PORT_DEFAULT = "CDR_DEV_PG_PORT", 54329
KAFKA_PORT_VAR, KAFKA_PORT_DEFAULT = "CDR_DEV_KAFKA_PORT", 19092
DEV_ADMIN_TOKEN = "dev-admin-token"


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise InfraError(f"invalid setting {var}: {raw!r} is not a port number")
    return int(raw)


def dev_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings `cdrflow dev` gives the services where the user set none."""
    defaults = {
        "CDR_ADMIN_TOKEN": DEV_ADMIN_TOKEN,
        "CDR_ALLOW_PRIVATE_WEBHOOKS": "true",  # the CRM one tests with runs on this machine
        "CDR_LOG_FORMAT": "console",  # a person reads these logs; JSON lines are for machines
    }
    return {name: environ.get(name, value) for name, value in defaults.items()}


class DevLauncher:
    def __init__(self, *, data_dir: Path, load_demo: bool = True) -> None:
        self.data_dir = data_dir
        self.load_demo = load_demo
        self.pg: EmbeddedPostgres | None = None
        self.tansu: Tansu | None = None
        self.services: list[ServiceProcess] = []
        self._stop_reason: str | None = None
        self.exit_code = 0

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def _check_ports(self, wanted: list[tuple[int, str, str]]) -> None:
        for port, var, what in wanted:
            if not port_is_free(port):
                raise InfraError(f"port {port} ({what}) is busy; set {var} to move it")

    def start(self) -> None:
        env: dict[str, str] = {}
        service_ports = [
            (_port(var, default), var, name) for name, (_m, var, default) in SERVICES.items()
        ]
        pg_port = _port(PG_PORT_VAR, PG_PORT_DEFAULT)
        kafka_port = _port(KAFKA_PORT_VAR, KAFKA_PORT_DEFAULT)
        ports = list(service_ports)
        # An embedded PostgreSQL left running by a launcher killed hard is reused, not a clash.
        if (
            not os.environ.get("CDR_DATABASE_URL")
            and not EmbeddedPostgres(self.data_dir / "pg", pg_port).is_running()
        ):
            ports.append((pg_port, PG_PORT_VAR, "embedded PostgreSQL"))
        if not os.environ.get("CDR_KAFKA_BOOTSTRAP"):
            ports.append((kafka_port, KAFKA_PORT_VAR, "Tansu broker"))
        self._check_ports(ports)

        if os.environ.get("CDR_DATABASE_URL"):
            env["CDR_DATABASE_URL"] = os.environ["CDR_DATABASE_URL"]
            typer.echo("PostgreSQL: using CDR_DATABASE_URL")
        else:
            typer.echo(
                f"PostgreSQL: starting embedded server on 127.0.0.1:{pg_port} "
                f"(data in {self.data_dir / 'pg'})"
            )
            self.pg = EmbeddedPostgres(self.data_dir / "pg", pg_port)
            try:
                self.pg.start()
            except InfraError as exc:
                raise InfraError(f"embedded PostgreSQL failed: {exc}") from None
            env["CDR_DATABASE_URL"] = self.pg.url()

        if os.environ.get("CDR_KAFKA_BOOTSTRAP"):
            env["CDR_KAFKA_BOOTSTRAP"] = os.environ["CDR_KAFKA_BOOTSTRAP"]
            typer.echo(f"Kafka: using {env['CDR_KAFKA_BOOTSTRAP']}")
        else:
            typer.echo(
                f"Kafka: starting Tansu on 127.0.0.1:{kafka_port} (in memory: a "
                "restart empties the log)"
            )
            self.tansu = Tansu(kafka_port, self.data_dir / "tansu.log")
            try:
                self.tansu.start()
            except InfraError as exc:
                raise InfraError(f"Tansu broker failed: {exc}") from None
            env["CDR_KAFKA_BOOTSTRAP"] = self.tansu.bootstrap

        env.update(dev_defaults(os.environ))

        from cdrmodel.kafka import ALL_TOPICS, ensure_topics, topic_name
        from cdrmodel.migrate import upgrade

        try:
            upgrade(env["CDR_DATABASE_URL"])
        except Exception as exc:
            raise InfraError(f"migrating PostgreSQL failed: {exc}") from None
        typer.echo("PostgreSQL: migrated")
        namespace = os.environ.get("CDR_TOPIC_NAMESPACE", "")
        try:
            asyncio.run(
                ensure_topics(
                    env["CDR_KAFKA_BOOTSTRAP"],
                    [topic_name(t, namespace) for t in ALL_TOPICS],
                    partitions=int(os.environ.get("CDR_KAFKA_PARTITIONS", "6")),
                )
            )
        except Exception as exc:
            raise InfraError(f"creating Kafka topics failed: {exc}") from None
        typer.echo("Kafka: topics ready")

        for port, _var, name in service_ports:
            proc = ServiceProcess(name, port, env)
            proc.start()
            self.services.append(proc)
        for proc in self.services:
            try:
                proc.wait_ready(90)
            except ServiceFailed as exc:
                raise InfraError(str(exc)) from None

        if self.load_demo:
            from cdrflow_dev.demo import load_demo

            load_demo(self.services[1].url, env["CDR_ADMIN_TOKEN"])
            typer.echo("demo tenant DEMO loaded (APIAccountID DEMO, APIPassword demopass)")

        typer.echo("")
        for proc in self.services:
            typer.secho(f"  {proc.name:<9} {proc.url}   (docs: {proc.url}/docs)", fg="green")
        admin = env["CDR_ADMIN_TOKEN"]
        typer.echo(f"\n  admin token: {admin}")
        ingest, notifier = self.services[0].url, self.services[2].url
        typer.echo(
            f"  try: curl '{ingest}/api_submitcdr.aspx?DatabaseID=DEMO&APIAccountID=DEMO"
            "&APIPassword=demopass&OriginatingNumber=100&DestinationNumber=16138220000&Duration=90'"
        )
        typer.echo(
            f"  then: curl -u DEMO/DEMO:demopass {notifier}/v1/cdrs\n  Ctrl-C stops everything."
        )

    def wait(self) -> None:
        while self._stop_reason is None:
            for proc in self.services:
                if not proc.alive():
                    typer.secho(f"{proc.name} exited unexpectedly; stopping", fg="red", err=True)
                    self.exit_code = 1
                    return
            time.sleep(0.2)
        typer.echo(f"\n{self._stop_reason}: stopping")

    def shutdown(self) -> None:
        for proc in reversed(self.services):
            proc.stop()
        self.services.clear()
        if self.tansu is not None:
            self.tansu.stop()
            self.tansu = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None

"""The benchmark's own throwaway stack: embedded PostgreSQL, Tansu, the three services, a bare app."""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from signal import SIGINT, SIGTERM
from types import TracebackType
from typing import Any

import httpx

from cdrflow_dev import infra
from cdrflow_dev.demo import load_demo
from cdrflow_dev.infra import EmbeddedPostgres, Tansu
from cdrflow_dev.processes import ServiceProcess
from cdrmodel.kafka import ALL_TOPICS, ensure_topics
from cdrmodel.migrate import upgrade

# Ports a developer's `make run` stack uses; the bench must never collide with one.
RESERVED_PORTS = frozenset({8081, 8082, 8083, 54329, 19092})
BENCH_TOPIC = "bench.raw.v1"
PARTITIONS = 6
ADMIN_TOKEN = "bench-admin-token"
DAILY_LIMIT = 100_000_000  # on, counted, and high enough never to answer 50429 in a run
BARE_APP = Path(__file__).resolve().parent / "bare_app.py"


def free_port() -> int:
    while True:
        port = infra.free_port()
        if port not in RESERVED_PORTS:
            return port


@dataclass(frozen=True)
class Standalone:
    """A throwaway migrated PostgreSQL and Tansu for one bench section run on its own."""

    pg: EmbeddedPostgres
    tansu: Tansu
    workdir: Path
    log: Callable[[str], None]

    def section_args(self) -> dict[str, Any]:
        """The keyword arguments every measure_* of a section takes, on this infrastructure."""
        return {
            "pg_port": self.pg.port,
            "bootstrap": self.tansu.bootstrap,
            "database_url": self.pg.url(),
            "workdir": self.workdir,
            "free_port": free_port,
            "log": self.log,
        }


@contextmanager
def standalone(name: str) -> Iterator[Standalone]:
    """`python bench/<name>_bench.py`: a throwaway PostgreSQL and Tansu, and a log that
    prints `[<name> bench  12.3s] ...`; everything stops and is deleted afterwards."""
    began = time.monotonic()

    def log(message: str) -> None:
        print(f"[{name} bench {time.monotonic() - began:6.1f}s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix=f"cdrflow-{name}-bench-") as tmp:
        workdir = Path(tmp)
        pg = EmbeddedPostgres(workdir / "pg", free_port())
        tansu = Tansu(free_port(), workdir / "tansu.log")
        try:
            pg.start()
            tansu.start()
            upgrade(pg.url())
            yield Standalone(pg, tansu, workdir, log)
        finally:
            tansu.stop()
            pg.stop()


class BenchStack:
    """Start with `with BenchStack(dir, log) as stack:`; leaving the block stops everything."""

    def __init__(self, workdir: Path, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.log = log
        self.pg: EmbeddedPostgres | None = None
        self.tansu: Tansu | None = None
        self.services: dict[str, ServiceProcess] = {}
        self.bare: ServiceProcess | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        assert self.tansu is not None
        return self.tansu.bootstrap

    @property
    def pg_port(self) -> int:
        assert self.pg is not None
        return self.pg.port

    def pid(self, service: str) -> int:
        proc = self.services[service].proc
        assert proc is not None
        return proc.pid

    def url(self, service: str) -> str:
        return self.services[service].url

    @property
    def bare_url(self) -> str:
        assert self.bare is not None
        return self.bare.url

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except KeyboardInterrupt:
            self.stop()
            raise
        except BaseException:
            self.dump_logs()
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            self.dump_logs()
        self.stop()

    def start(self) -> None:
        self.pg = EmbeddedPostgres(self.workdir / "pg", free_port())
        self.log(f"PostgreSQL: starting on 127.0.0.1:{self.pg.port}")
        self.pg.start()
        self.tansu = Tansu(free_port(), self.workdir / "tansu.log")
        self.log(f"Tansu: starting on {self.tansu.bootstrap}")
        self.tansu.start()
        upgrade(self.pg.url())
        asyncio.run(
            ensure_topics(self.bootstrap, [*ALL_TOPICS, BENCH_TOPIC], partitions=PARTITIONS)
        )
        self.log("PostgreSQL migrated, Kafka topics created")

        env = {
            "CDR_DATABASE_URL": self.pg.url(),
            "CDR_KAFKA_BOOTSTRAP": self.bootstrap,
            "CDR_ADMIN_TOKEN": ADMIN_TOKEN,
            "CDR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "CDR_LOG_LEVEL": "warning",
        }
        for name in ("ingest", "rater", "notifier"):
            proc = ServiceProcess(name, free_port(), env, log_path=self.workdir / f"{name}.log")
            proc.start()
            self.services[name] = proc
        bare_port = free_port()
        self.bare = ServiceProcess(
            "bare FastAPI app",
            bare_port,
            {},
            log_path=self.workdir / "bare_app.log",
            command=[sys.executable, str(BARE_APP), f"--port={bare_port}"],
            ready_path="/ping",
        )
        self.bare.start()
        for proc in self.services.values():
            proc.wait_ready(90)
            self.log(f"{proc.name}: ready on {proc.url}")
        self.bare.wait_ready(30)
        self.log(f"bare FastAPI app: ready on {self.bare_url}")

        load_demo(self.url("rater"), ADMIN_TOKEN)
        # The demo account's daily limit (1000) would turn a throughput run into a run of
        # 50429 answers; the bench measures accepting, so the limit is raised, not lifted:
        # every accepted record still takes its slot with the same statement as in production.
        httpx.put(
            f"{self.url('rater')}/v1/admin/tenants/DEMO/api-accounts/DEMO",
            json={
                "password": "demopass",
                "daily_limit": DAILY_LIMIT,
                "default_package": "demo",
            },
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        ).raise_for_status()
        self.log(f"demo tenant DEMO loaded (daily limit raised to {DAILY_LIMIT:,})")

    def stop(self) -> None:
        """Stops whatever started, in reverse order; one failure does not keep the rest running."""
        # A second Ctrl-C must not abort the teardown half-way and leave PostgreSQL running.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (SIGINT, SIGTERM)}
        try:
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_all(self) -> None:
        # Signal every service first so their graceful shutdowns overlap instead of queueing.
        for proc in self.services.values():
            if proc.proc is not None and proc.alive():
                proc.proc.terminate()
        steps: list[tuple[str, Callable[[], None]]] = [
            (name, proc.stop) for name, proc in reversed(self.services.items())
        ]
        if self.bare is not None:
            steps.append(("bare FastAPI app", self.bare.stop))
        if self.tansu is not None:
            steps.append(("Tansu", self.tansu.stop))
        if self.pg is not None:
            steps.append(("PostgreSQL", self.pg.stop))
        for what, stop in steps:
            began = time.monotonic()
            try:
                stop()
            except Exception as exc:  # keep going: the next process must still be stopped
                self.log(f"stopping {what} failed: {exc!r}")
            if (took := time.monotonic() - began) > 2:
                self.log(f"stopping {what} took {took:.1f} s")
        self.services.clear()
        self.bare = None
        self.tansu = None
        self.pg = None
        self.log("stack stopped")

    def dump_logs(self, lines: int = 15) -> None:
        """The tail of every log, so a failed start says why before the temp dir is removed."""
        logs = [*sorted(self.workdir.glob("*.log")), self.workdir / "pg" / "server.log"]
        for path in logs:
            if not path.exists():
                continue
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                print(f"--- {path.name} (last {len(tail)} lines)", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)

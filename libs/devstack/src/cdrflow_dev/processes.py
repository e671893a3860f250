"""The three services (or any HTTP server) as supervised processes: for `cdrflow dev`, tests, bench."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from cdrflow_dev.infra import die_with_parent

SERVICES = {
    # name: (module, port variable, default port)
    "ingest": ("cdr_ingest", "CDR_INGEST_PORT", 8081),
    "rater": ("cdr_rater", "CDR_RATER_PORT", 8082),
    "notifier": ("cdr_notifier", "CDR_NOTIFIER_PORT", 8083),
}


class ServiceFailed(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    """One of SERVICES by name, or (with `command`) any HTTP server answering `ready_path`."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path | None = None
    command: list[str] | None = None
    ready_path: str = "/readyz"
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env}
        argv = self.command
        if argv is None:
            module, port_var, _ = SERVICES[self.name]
            env[port_var] = str(self.port)
            argv = [sys.executable, "-m", module]
        out: IO[bytes] | int | None = None
        if self.log_path is not None:
            self._close_log()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            out = self._log
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            # Own process group: a terminal's Ctrl-C reaches only the launcher, which then
            # stops services before the broker and the database, in that order.
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ServiceFailed(f"{self.name} exited with code {code} while starting")
            try:
                resp = httpx.get(f"{self.url}{self.ready_path}", timeout=2)
                if resp.status_code == 200:
                    return
                last = resp.text
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.1)
        raise ServiceFailed(f"{self.name} not ready after {timeout:.0f}s: {last}")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing; what a crash looks like."""
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

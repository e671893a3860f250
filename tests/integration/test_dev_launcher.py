"""`cdrflow dev` (what `make run` runs): starts everything, serves the seed sample, and
stops every process it started on SIGTERM; a dead PostgreSQL is named and exits non-zero.
The command comes from the dev package's `cdrflow.commands` entry point, not from cdrmodel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from cdrflow_dev.infra import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

CDRFLOW = str(Path(sys.executable).parent / "cdrflow")  # the installed console script
SAMPLE = (
    "/api_submitcdr.aspx?DatabaseID=DEMO&APIAccountID=DEMO&APIPassword=demopass"
    "&OriginatingNumber=100&DestinationNumber=16138220000&Duration=90"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    env.update(
        CDR_INGEST_PORT=str(free_port()),
        CDR_RATER_PORT=str(free_port()),
        CDR_NOTIFIER_PORT=str(free_port()),
        CDR_DEV_PG_PORT=str(free_port()),
        CDR_DEV_KAFKA_PORT=str(free_port()),
        **extra,
    )
    return env


async def test_dev_runs_the_sample_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    env = _env()
    with (tmp_path / "dev.log").open("wb") as log:
        proc = subprocess.Popen(
            [CDRFLOW, "dev", "--data-dir", str(tmp_path / "data")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    ingest = f"http://127.0.0.1:{env['CDR_INGEST_PORT']}"
    notifier = f"http://127.0.0.1:{env['CDR_NOTIFIER_PORT']}"
    started: set[int] = set()
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def demo_loaded() -> bool:
                assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
                try:
                    resp = await client.get(f"{notifier}/v1/cdrs", auth=("DEMO/DEMO", "demopass"))
                except httpx.TransportError:
                    return False
                return resp.status_code == 200

            await wait_for(demo_loaded, timeout=120, interval=0.2, what="cdrflow dev up")
            children = psutil.Process(proc.pid).children(recursive=True)
            started = {p.pid for p in children}
            services = [p for p in children if "-m" in p.cmdline()]
            assert len(services) == 3
            # Services started by `cdrflow dev` log for a person reading a terminal.
            assert {p.environ().get("CDR_LOG_FORMAT") for p in services} == {"console"}
            pg_pid = int((tmp_path / "data" / "pg" / "postmaster.pid").read_text().split()[0])
            started.add(pg_pid)
            assert (await client.get(ingest + SAMPLE)).text == "0"

            async def priced() -> list:
                resp = await client.get(f"{notifier}/v1/cdrs", auth=("DEMO/DEMO", "demopass"))
                return [r for r in resp.json()["cdrs"] if r["total"] == "0.03000000"]

            await wait_for(priced, timeout=60, what="the sample priced at 0.03")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0

    async def all_gone() -> bool:
        return not [
            pid
            for pid in started
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]

    await wait_for(all_gone, timeout=30, what=f"processes {sorted(started)} to exit")
    assert len(started) >= 5  # three services, Tansu, PostgreSQL
    if os.geteuid() == 0:
        # What root changes is said where the person running it looks.
        log = (tmp_path / "dev.log").read_text()
        assert f"cdrflow dev: root: chown -R embedded_postgres {tmp_path / 'data' / 'pg'} " in log


def test_dev_names_an_unreachable_postgres_and_exits_non_zero(tmp_path: Path) -> None:
    env = _env(CDR_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    done = subprocess.run(
        [sys.executable, "-m", "cdrmodel.cli", "dev", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "PostgreSQL" in done.stderr and "failed" in done.stderr

"""`cdrflow submit` end to end: a generated Master.csv sent to the real ingest process,
interrupted with SIGINT once the state file shows progress, resumed, and every line stored
exactly once by the real rater; sent again with --restart, every line answers 50421."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from cdrmodel.db import asyncpg_dsn
from tests.conftest import Infra, Stack
from tests.helpers import Tenant, copies_by_external_id, create_tenant, wait_for, wait_stored
from tests.submit_stub import summary_counts

pytestmark = pytest.mark.slow

LINES = 3000
PBX = Path(__file__).resolve().parents[1] / "fixtures" / "pbx"


def _master_csv(path: Path, count: int) -> None:
    # 17 columns, the last a uniqueid: each line a distinct call the test can count by id.
    with path.open("wb") as f:
        for i in range(count):
            f.write(
                f'"","1000","1613555{i:04d}","from-internal","""A"" <1000>","SIP/1000-1",'
                f'"SIP/carrier-2","Dial","SIP/carrier/1613555{i:04d}","2026-03-02 09:{i // 60 % 60:02d}:{i % 60:02d}",'
                f'"2026-03-02 09:00:03","2026-03-02 09:01:03",63,60,"ANSWERED","BILLING",'
                f'"1782997200.{i}"\n'.encode()
            )


def _watermark(state_file: Path) -> int:
    try:
        return int(json.loads(state_file.read_text())["watermark"])
    except (OSError, ValueError):
        return 0


async def test_submit_interrupted_and_resumed_stores_every_line_once(
    infra: Infra, stack: Stack, tmp_path: Path
) -> None:
    tenant: Tenant = await create_tenant(stack.rater.url)
    path = tmp_path / "Master.csv"
    _master_csv(path, LINES)
    state_file = tmp_path / "Master.csv.cdrflow-state"
    command = [sys.executable, "-m", "cdrmodel.cli", "submit", str(path), "--batch-size", "20"]
    env = {
        **os.environ,
        "CDR_SUBMIT_URL": stack.ingest.url,
        "CDR_SUBMIT_DATABASE": tenant.database_id,
        "CDR_SUBMIT_ACCOUNT": tenant.account,
        "CDR_SUBMIT_PASSWORD": tenant.password,
        "COLUMNS": "200",
    }
    first = subprocess.Popen(
        [*command, "--concurrency", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    await wait_for(
        lambda: _watermark(state_file) > 0 or first.poll() is not None,
        timeout=60,
        interval=0.01,
        what="the state file to show progress",
    )
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, (out, err)
    interrupted = summary_counts(out.decode())
    assert 0 < interrupted["0"] < LINES

    second = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr
    counts = summary_counts(second.stdout.decode())
    assert set(counts) <= {"0", "50421"}
    assert counts.get("0", 0) + counts.get("50421", 0) == LINES

    again = subprocess.run([*command, "--restart"], env=env, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert summary_counts(again.stdout.decode()) == {"50421": LINES}

    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:
        await wait_stored(conn, tenant.database_id, LINES, timeout=120)
        copies = await copies_by_external_id(conn, tenant.database_id)
    finally:
        await conn.close()
    assert len(copies) == LINES and set(copies.values()) == {1}


async def test_submit_a_directory_of_mod_json_cdr_files(stack: Stack, tmp_path: Path) -> None:
    tenant = await create_tenant(stack.rater.url)
    directory = tmp_path / "json_cdr"
    directory.mkdir()
    for fixture in PBX.glob("freeswitch_*.json"):
        (directory / fixture.name).write_bytes(fixture.read_bytes())
    env = {**os.environ, "CDR_SUBMIT_PASSWORD": tenant.password, "COLUMNS": "200"}
    command = [
        sys.executable, "-m", "cdrmodel.cli", "submit", str(directory),
        "--url", stack.ingest.url, "--database", tenant.database_id, "--account", tenant.account,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    # Both legs of the bridged call are in the directory: the B-leg is answered 50462 (not
    # billed), which is no failure.
    assert done.returncode == 0, done.stderr
    assert summary_counts(done.stdout.decode()) == {"0": 3, "50462": 1}

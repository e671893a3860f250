"""The embedded PostgreSQL as root: every change it makes outside its data directory is one
logged line, and it changes no more than PostgreSQL needs (o+x to traverse, never o+r)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from cdrflow_dev.infra import EmbeddedPostgres, InfraError, ensure_system_user, free_port
from tests.conftest import Infra

IS_ROOT = os.geteuid() == 0


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.lstat().st_mode) for path in paths}


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("cdrflow_dev")]


def test_every_permission_change_outside_the_data_dir_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o700)  # what the PostgreSQL account cannot traverse
    data = locked / "pg"
    pg = EmbeddedPostgres(data, free_port())
    install = pg.bin_dir.parent
    outside = [*data.parents, *install.parents, install, *install.rglob("*")]
    before = _modes(outside)
    caplog.set_level(logging.INFO, logger="cdrflow_dev")
    pg.start()
    try:
        assert pg.is_running()
    finally:
        pg.stop()
    after = _modes(outside)
    changed = [path for path in outside if after[path] != before[path]]
    messages = _messages(caplog)
    for path in changed:
        # A change inside the installation is reported once, for the installation's root.
        named = install if install in path.parents else path
        assert any(str(named) in m for m in messages), (path, messages)
    if IS_ROOT:
        assert after[locked] == 0o701, oct(after[locked])  # traverse only: no listing
        assert f"root: chmod o+x {locked} (0700 -> 0701) so user embedded_postgres" in "\n".join(
            messages
        )
        assert any(
            m.startswith(f"root: chown -R embedded_postgres {data} ") and str(data) in m
            for m in messages
        )
    else:
        assert changed == []
        assert not [m for m in messages if m.startswith("root:")]


def test_creating_the_postgres_system_user_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    name = f"cdrt{os.getpid()}"
    caplog.set_level(logging.INFO, logger="cdrflow_dev")
    if not IS_ROOT:
        with pytest.raises(InfraError, match=f"could not create system user {name}"):
            ensure_system_user(name)
        return
    try:
        entry = ensure_system_user(name)
        assert entry.pw_name == name
        ensure_system_user(name)  # exists now: nothing to do, nothing logged
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
    created = [m for m in _messages(caplog) if "created system user" in m]
    assert created == [
        f"root: created system user {name} (useradd --system --no-create-home {name}) because "
        f"PostgreSQL refuses to run as root; `userdel {name}` removes it"
    ]


def test_a_cluster_left_running_is_recognised_by_a_new_handle(infra: Infra, tmp_path: Path) -> None:
    # `cdrflow dev` asks this before preparing anything, to reuse a server a killed launcher
    # left behind; as root `pg_ctl status` refuses to run, so the answer must not depend on it.
    assert EmbeddedPostgres(infra.pg.data_dir, infra.pg.port).is_running()
    assert not EmbeddedPostgres(tmp_path / "never-started", free_port()).is_running()

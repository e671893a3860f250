"""Runs one HTTP load measurement with wrk when it is on PATH, else with bench/loadgen.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from loadgen import LoadResult, is_loopback_url

from cdrflow_dev.infra import die_with_parent

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_report.lua"
LOADGEN = HERE / "loadgen.py"
SLACK = 60.0  # seconds a run may overrun its duration before it is killed as hung


class LoadFailed(RuntimeError):
    pass


def wrk_path() -> str | None:
    return shutil.which("wrk")


def tool_name() -> str:
    path = wrk_path()
    if path is None:
        import aiohttp

        return f"aiohttp {aiohttp.__version__} load generator (bench/loadgen.py, separate process)"
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    version = (done.stdout + done.stderr).strip().splitlines()
    return f"wrk ({version[0] if version else path}), 1 thread, Lua script bench/wrk_report.lua"


def run_load(
    url: str,
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
    expect: str | None,
    unique: str | None = None,
    rate: float | None = None,
) -> LoadResult:
    """One run; `unique` names a query parameter given a fresh value per request, `rate` paces
    the requests (open loop). Both need bench/loadgen.py (wrk neither paces nor varies)."""
    if not is_loopback_url(url):
        raise LoadFailed(f"refusing to load a non-loopback URL: {url}")
    wrk = wrk_path()
    if wrk is not None and unique is None and rate is None:
        return _run_wrk(
            wrk, url, seconds=seconds, warmup=warmup, concurrency=concurrency, expect=expect
        )
    return _run_loadgen(
        url,
        seconds=seconds,
        warmup=warmup,
        concurrency=concurrency,
        expect=expect,
        unique=unique,
        rate=rate,
    )


def _run_loadgen(
    url: str,
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
    expect: str | None,
    unique: str | None,
    rate: float | None,
) -> LoadResult:
    cmd = [
        sys.executable,
        str(LOADGEN),
        f"--url={url}",
        f"--duration={seconds}",
        f"--warmup={warmup}",
        f"--concurrency={concurrency}",
    ]
    if expect is not None:
        cmd.append(f"--expect={expect}")
    if unique is not None:
        cmd.append(f"--unique={unique}")
    if rate is not None:
        cmd.append(f"--rate={rate:.1f}")
    done = _run(cmd, timeout=seconds + warmup + SLACK)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise LoadFailed(f"load generator printed nothing: {done.stderr.strip()[-500:]}")
    return LoadResult.from_json(lines[-1])


def _wrk_once(
    wrk: str, url: str, *, seconds: float, concurrency: int, expect: str | None
) -> dict[str, float]:
    cmd = [
        wrk,
        "-t1",  # one wrk thread does well over the server's rate; the other core serves
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout=30s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        expect or "",
    ]
    done = _run(cmd, timeout=seconds + SLACK)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            return data
    raise LoadFailed(f"wrk printed no BENCH_JSON line: {done.stdout[-500:]} {done.stderr[-500:]}")


def _run_wrk(
    wrk: str, url: str, *, seconds: float, warmup: float, concurrency: int, expect: str | None
) -> LoadResult:
    warm: dict[str, float] | None = None
    if warmup > 0:
        warm = _wrk_once(wrk, url, seconds=warmup, concurrency=concurrency, expect=expect)
    data = _wrk_once(wrk, url, seconds=seconds, concurrency=concurrency, expect=expect)
    requests, bad = int(data["requests"]), int(data["bad"])
    errors = bad + int(data["socket_errors"])
    return LoadResult(
        tool=tool_name(),
        url=url,
        concurrency=concurrency,
        seconds=data["duration_us"] / 1e6,
        requests=requests,
        ok=requests - bad,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        warmup_requests=int(warm["requests"]) if warm else 0,
        warmup_ok=int(warm["requests"] - warm["bad"]) if warm else 0,
        error_samples={"non-expected answers or socket errors": errors} if errors else {},
    )


def _run(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    label = Path(cmd[1] if cmd[0] == sys.executable else cmd[0]).name
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise LoadFailed(f"{label} overran its time by {SLACK:.0f}s") from None
    except BaseException:
        # Ctrl-C while measuring: the generator must not outlive us.
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise LoadFailed(f"{label} exited {proc.returncode}: {err.strip()[-500:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

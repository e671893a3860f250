"""Renders the measurements of `bench/run.py` as docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka_baseline import ProducerResult
from loadgen import LoadResult

REPO = Path(__file__).resolve().parent.parent


@dataclass
class StoredResult:
    """End to end: CDRs accepted by ingest and stored by the rater during one ingest run."""

    accepted: int
    stored: int
    rated: int
    seconds: float  # from the start of the ingest load until the table caught up (or gave up)
    load_seconds: float  # the ingest load alone, warm-up included
    lag_at_load_end: int
    drain_seconds: float
    caught_up: bool

    @property
    def stored_rate(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def accepted_rate(self) -> float:
        return self.accepted / self.load_seconds if self.load_seconds > 0 else 0.0


@dataclass
class Measurements:
    bare: LoadResult
    compat: LoadResult
    raw_producer: ProducerResult
    acked_senders: ProducerResult
    stored: StoredResult | None
    cold_start_seconds: float
    cold_start_errors: int
    duration: float
    warmup: float
    concurrency: int


def _first_line_with(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(prefix):
                    return line
    except OSError:
        return None
    return None


def machine() -> str:
    model_line = _first_line_with("/proc/cpuinfo", "model name")
    model = model_line.split(":", 1)[1].strip() if model_line else platform.processor()
    mem_line = _first_line_with("/proc/meminfo", "MemTotal:")
    memory = f"{int(mem_line.split()[1]) / 1024 / 1024:.1f} GiB" if mem_line else "unknown"
    return (
        f"{os.cpu_count()} CPUs ({model or 'unknown model'}), {memory} RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        sha += " (plus uncommitted changes)"
    return sha


def _num(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ratio(figure: float | None, baseline: float | None) -> str:
    if figure is None or not baseline:
        return "n/a"
    return f"{figure / baseline:.2f}x"


def render(m: Measurements) -> str:
    bare, compat, raw, acked = m.bare, m.compat, m.raw_producer, m.acked_senders
    accepted_rate = compat.ok / compat.seconds if compat.seconds > 0 else 0.0
    rows: list[tuple[str, str, str, str]] = [
        (
            "compat submit GET vs bare FastAPI GET: req/s",
            _num(bare.rps),
            _num(compat.rps),
            _ratio(compat.rps, bare.rps),
        ),
        (
            "compat submit GET vs bare FastAPI GET: p50 latency, ms",
            _ms(bare.p50_ms),
            _ms(compat.p50_ms),
            _ratio(compat.p50_ms, bare.p50_ms),
        ),
        (
            "compat submit GET vs bare FastAPI GET: p99 latency, ms",
            _ms(bare.p99_ms),
            _ms(compat.p99_ms),
            _ratio(compat.p99_ms, bare.p99_ms),
        ),
        (
            f"accepted compat submits/s vs aiokafka `send_and_wait`, {m.concurrency}"
            " senders (ingest's publish pattern without HTTP): records/s",
            _num(acked.rate),
            _num(accepted_rate),
            _ratio(accepted_rate, acked.rate),
        ),
        (
            "compat submit p50 latency vs that `send_and_wait` p50 (the ack wait alone), ms",
            _ms(acked.p50_ms),
            _ms(compat.p50_ms),
            _ratio(compat.p50_ms, acked.p50_ms),
        ),
        (
            "accepted compat submits/s vs raw aiokafka producer (acks=all, linger 5 ms, "
            "not awaiting each ack): records/s",
            _num(raw.rate),
            _num(accepted_rate),
            _ratio(accepted_rate, raw.rate),
        ),
    ]
    stored = m.stored
    if stored is not None:
        rows.append(
            (
                "end to end: CDRs stored by the rater per s vs accepted by ingest per s"
                + ("" if stored.caught_up else " (did NOT catch up; see notes)"),
                _num(stored.accepted_rate),
                _num(stored.stored_rate),
                _ratio(stored.stored_rate, stored.accepted_rate),
            )
        )

    out = [
        "# cdrflow benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); rerun it rather than editing this file.",
        "",
        f"- machine: {machine()}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git: `{git_revision()}`",
        f"- HTTP load tool: {compat.tool}",
        f"- load: {m.concurrency} connections, {m.warmup:g} s warm-up then {m.duration:g} s"
        " measured per HTTP row; every server on 127.0.0.1 and on the same cores as the"
        " load generator",
        "- stack: the bench's own embedded PostgreSQL and Tansu (in memory), ingest, rater and"
        " notifier as started by `cdrflow dev`, one uvicorn worker each (uvloop, httptools, no"
        " access log); the baseline is a bare FastAPI app with one GET returning"
        ' `{"status":"ok"}`, served the same way',
        "",
        "| what | baseline | figure | ratio |",
        "|---|---:|---:|---:|",
        *(f"| {what} | {base} | {fig} | {ratio} |" for what, base, fig, ratio in rows),
        "",
        "How to read this: ratio = figure / baseline, so below 1 is slower for rates and above 1"
        " is slower for latencies. Every baseline was measured in the same run as its figure, on"
        f" a noisy {os.cpu_count()}-core machine that every process of the run shares, where"
        " absolute numbers swing by a third from run to run; compare ratios, and compare"
        " absolute figures only within one file.",
        "",
        "## Notes",
        "",
        f"- compat submit: `GET {_path(compat.url)}`; {compat.requests:,} measured requests,"
        f" {compat.errors:,} answered other than `0`{_samples(compat)}."
        " The rater and PostgreSQL work on the accepted records at the same time, on the same"
        " cores, as they would in production.",
        f"- bare FastAPI GET: {bare.requests:,} measured requests, {bare.errors:,} errors"
        f"{_samples(bare)}.",
        f"- cold start (not in the table): the first {m.concurrency} concurrent compat submits"
        f" to a freshly started ingest, before its credential and principal caches are warm,"
        f" took up to {m.cold_start_seconds:.2f} s to answer"
        + (f" ({m.cold_start_errors} not `0`)" if m.cold_start_errors else "")
        + "; the measured rows come later, after that and a warm-up.",
        _generator_note(bare, compat),
        f"- aiokafka baselines: {raw.messages:,} messages of {raw.payload_bytes} bytes (a"
        " `CdrSubmitted` event like ingest's), key `DEMO` as ingest keys them, to Tansu, with"
        " ingest's producer settings (`cdrmodel.kafka.make_producer`: acks=all, linger 5 ms)."
        f" `send_and_wait`: {acked.messages:,} records, p99 {_ms(acked.p99_ms)} ms.",
    ]
    if stored is not None:
        out.append(
            f"- end to end: {stored.accepted:,} records accepted (warm-up included, counted by"
            f" ingest's `/metrics`), {stored.stored:,} stored in `cdr` ({stored.rated:,} of"
            f" them rated) in {stored.seconds:.1f} s from the start of the load; "
            + _drain_note(stored)
        )
    return "\n".join(out) + "\n"


def _drain_note(stored: StoredResult) -> str:
    if not stored.caught_up:
        return (
            f"{stored.lag_at_load_end:,} were missing when the load stopped and"
            f" {stored.accepted - stored.stored:,} still were {stored.drain_seconds:.1f} s later,"
            " when the bench gave up waiting."
        )
    if stored.lag_at_load_end == 0:
        return "the rater kept pace: no accepted record was missing when the load stopped."
    return (
        f"{stored.lag_at_load_end:,} were missing when the load stopped, all stored"
        f" {stored.drain_seconds:.1f} s later."
    )


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url


def _samples(result: LoadResult) -> str:
    if not result.error_samples:
        return ""
    kinds = "; ".join(f"{kind}: {count:,}" for kind, count in result.error_samples.items())
    return f" ({kinds})"


def _generator_note(bare: LoadResult, compat: LoadResult) -> str:
    if bare.generator_cpu is None or compat.generator_cpu is None:
        return "- load generator: wrk in its own process."
    return (
        "- load generator CPU (1.00 = one full core): "
        f"{bare.generator_cpu:.2f} during the bare GET, {compat.generator_cpu:.2f} during the"
        " compat GET; near 1.00 would mean the generator, not the server, set the pace."
    )

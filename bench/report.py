"""Renders the measurements of `bench/run.py` as docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batch_load import BatchResult
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
class Memory:
    peak_mb: float  # the ingest process's VmHWM: its largest resident set since it started
    now_mb: float


# Issue 8's targets, printed beside the figures they bound.
PACED_P99_TARGET_MS = 20.0
RSS_TARGET_MB = 200.0
BATCH_TARGET = 50_000


@dataclass
class Measurements:
    bare: LoadResult
    compat: LoadResult
    raw_producer: ProducerResult
    acked_senders: ProducerResult
    stored: StoredResult | None
    paced: LoadResult
    paced_rate: float
    raw_batch_producer: ProducerResult
    batch: BatchResult | None
    batch_size: int
    batch_concurrency: int
    memory: Memory
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
    compat_name = "compat submit GET (dedupe and daily limit on) vs bare FastAPI GET"
    rows: list[tuple[str, str, str, str]] = [
        (
            f"{compat_name}: req/s",
            _num(bare.rps),
            _num(compat.rps),
            _ratio(compat.rps, bare.rps),
        ),
        (
            f"{compat_name}: p50 latency, ms",
            _ms(bare.p50_ms),
            _ms(compat.p50_ms),
            _ratio(compat.p50_ms, bare.p50_ms),
        ),
        (
            f"{compat_name}: p99 latency, ms",
            _ms(bare.p99_ms),
            _ms(compat.p99_ms),
            _ratio(compat.p99_ms, bare.p99_ms),
        ),
        (
            f"compat submit GET paced at {m.paced_rate:,.0f} req/s (half the bare rate):"
            f" p99 latency, ms, vs the {PACED_P99_TARGET_MS:g} ms target",
            _ms(PACED_P99_TARGET_MS),
            _ms(m.paced.p99_ms),
            _ratio(m.paced.p99_ms, PACED_P99_TARGET_MS),
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

    batch = m.batch
    raw_batch = m.raw_batch_producer
    if batch is not None:
        rows.append(
            (
                f"`POST /v1/cdrs` NDJSON, {m.batch_size:,}-record bodies, {m.batch_concurrency}"
                " in flight, vs raw aiokafka producer sending the same records one `send()`"
                " each: CDRs/s into Kafka",
                _num(raw_batch.rate),
                _num(batch.rate),
                _ratio(batch.rate, raw_batch.rate),
            )
        )
    rows.append(
        (
            f"ingest peak RSS through the whole bench, MiB, vs the {RSS_TARGET_MB:g} MiB target",
            _num(RSS_TARGET_MB),
            _num(m.memory.peak_mb),
            _ratio(m.memory.peak_mb, RSS_TARGET_MB),
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
        f"- compat submit: `GET {_path(compat.url)}&ExternalID=<new each request>`;"
        f" {compat.requests:,} measured requests, {compat.errors:,} answered other than"
        f" `0`{_samples(compat)}. Each request is a new dedupe key and takes a slot of the"
        " account's daily limit (set to 100,000,000 so it never bites): the same admit,"
        " produce and acknowledge as in production, gathered per account by group commit."
        " The rater and PostgreSQL work on the accepted records at the same time, on the same"
        " cores, as they would in production.",
        f"- paced compat submit: requests issued at a fixed {m.paced_rate:,.0f}/s (open loop,"
        f" at most {m.paced.concurrency} connections), each latency counted from when the"
        f" request was due; {m.paced.requests:,} measured requests in {m.paced.seconds:.1f} s"
        f" ({m.paced.rps:,.0f}/s), p50 {_ms(m.paced.p50_ms)} ms, {m.paced.errors:,} answered"
        f" other than `0`{_samples(m.paced)}.",
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
    out.append(_batch_note(m))
    out.append(
        f"- ingest memory: resident set {m.memory.now_mb:.0f} MiB at the end, peak (VmHWM,"
        f" from its start through every row above) {m.memory.peak_mb:.0f} MiB."
    )
    out.append(
        "- other work on the machine: the bench shares its 2 cores with whatever else runs"
        " (on the day this file was written, other developers' test suites); the ratios"
        " compare figures taken minutes apart under that same noise."
    )
    if stored is not None:
        out.append(
            f"- end to end: {stored.accepted:,} records accepted (warm-up included, counted by"
            f" ingest's `/metrics`), {stored.stored:,} stored in `cdr` ({stored.rated:,} of"
            f" them rated) in {stored.seconds:.1f} s from the start of the load; "
            + _drain_note(stored)
        )
    return "\n".join(out) + "\n"


def _batch_note(m: Measurements) -> str:
    raw = m.raw_batch_producer
    base = (
        f"- raw producer for the batch row: {raw.messages:,} `send()` calls of the"
        f" `CdrSubmitted` events ingest produces for those records ({raw.payload_bytes} bytes"
        " each, key `DEMO`), acks=all, linger 5 ms, all awaited."
    )
    batch = m.batch
    if batch is None:
        return base + " Ingest served no `/v1/cdrs` in this run, so there is no batch row."
    return (
        base + f" `/v1/cdrs`: {batch.batches:,} bodies of {m.batch_size:,} NDJSON records"
        f" ({batch.record_bytes} bytes a line, every record a new `external_id`, so one dedupe"
        f" key each), {batch.accepted:,} of {batch.records:,} records accepted in"
        f" {batch.seconds:.1f} s: {batch.rate:,.0f} CDRs/s (target {BATCH_TARGET:,});"
        f" a body answered in {batch.p50_ms:,.0f} ms at p50, {batch.p99_ms:,.0f} ms at p99"
        + (f"; errors: {batch.errors}" if batch.errors else "")
        + ". The rater consumes them meanwhile, on the same cores."
    )


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

"""`make bench`: measure a throwaway cdrflow stack against same-run baselines; write the report."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg
import httpx
from batch_load import BatchResult, kafka_payloads, post_batches
from kafka_baseline import ProducerResult, acked_senders, raw_producer
from load import run_load, tool_name
from loadgen import LoadResult
from notifier_bench import NotifierMeasurements, measure_notifier
from notifier_bench import render_section as render_notifier_section
from queries_bench import QueriesMeasurements, measure_queries
from queries_bench import render_section as render_queries_section
from rater_bench import DISTINCT_NUMBERS, RaterMeasurements, measure_rater, render_section
from report import REPO, Measurements, Memory, StoredResult, git_revision, machine, render
from stack import BENCH_TOPIC, BenchStack, free_port, standalone

COMPAT_QUERY = (
    "/api_submitcdr.aspx?DatabaseID=DEMO&APIAccountID=DEMO&APIPassword=demopass"
    "&OriginatingNumber=100&DestinationNumber=16138220000&Duration=90"
)
ACCEPTED_METRIC = re.compile(
    r'^cdrflow_ingest_submissions_total\{(?=[^}]*endpoint="api_submitcdr")(?=[^}]*code="0")'
    r"[^}]*\}\s+([0-9.eE+]+)$",
    re.MULTILINE,
)
UNIQUE = "ExternalID"  # a fresh one on every compat request: each is a new key to dedupe
BATCH_PATH = "/v1/cdrs"
STALL_SECONDS = 15.0  # no new row for this long while behind: the rater is stuck, stop waiting

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _started:6.1f}s] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start a throwaway cdrflow stack (embedded PostgreSQL + Tansu, free ports),"
        " measure it against same-run baselines and write a markdown report.",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per run (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="unmeasured seconds before each HTTP run (default 2)",
    )
    whole_numbers = (
        ("--concurrency", 32, "connections / senders in flight"),
        (
            "--producer-messages",
            100_000,
            "messages of each raw producer baseline (also bounded by --duration)",
        ),
        ("--paced-connections", 256, "connection cap of the fixed-rate compat row"),
        ("--batch-size", 10_000, "records per /v1/cdrs body"),
        ("--batch-concurrency", 2, "/v1/cdrs bodies in flight"),
    )
    for flag, default, text in whole_numbers:
        parser.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the rater to store every accepted CDR (default 60)",
    )
    parser.add_argument(
        "--rater-events",
        type=int,
        default=100_000,
        help="CDRs per rater run, produced straight to the topic (default 100000)",
    )
    parser.add_argument(
        "--notifier-deliveries",
        type=int,
        default=20_000,
        help="pending deliveries of each notifier backlog run (default 20000)",
    )
    parser.add_argument(
        "--queries-rows",
        type=int,
        default=10_000_000,
        help="CDRs the queries section loads by COPY before timing its reads (default 10000000)",
    )
    parser.add_argument(
        "--only",
        choices=["queries"],
        help="run one section alone on a throwaway PostgreSQL and Tansu, without the other"
        " services: 'queries' (load --queries-rows CDRs, then time the feed, getCDR and the CSV"
        " export); the report then holds that section only",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="report path (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the temp dir (logs, data) for a post-mortem"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        parser.error("--duration must be > 0, --warmup >= 0 and --concurrency >= 1")
    if min(args.paced_connections, args.batch_size, args.batch_concurrency) < 1:
        parser.error("--paced-connections, --batch-size and --batch-concurrency must be >= 1")
    if args.producer_messages < 1 or args.drain_timeout <= 0:
        parser.error("--producer-messages must be >= 1 and --drain-timeout > 0")
    if args.notifier_deliveries < 1:
        parser.error("--notifier-deliveries must be >= 1")
    if args.queries_rows < 1:
        parser.error("--queries-rows must be >= 1")
    return args


def accepted_total(ingest_url: str) -> int | None:
    """Submissions ingest answered `0`, from its /metrics; None when the metric is absent."""
    text = httpx.get(f"{ingest_url}/metrics", timeout=10).text
    match = ACCEPTED_METRIC.search(text)
    if match:
        return int(float(match.group(1)))
    # The family is listed before its first sample exists: nothing accepted yet.
    return 0 if "# TYPE cdrflow_ingest_submissions_total counter" in text else None


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS stored, count(*) FILTER (WHERE rated) AS rated"
        " FROM cdr WHERE database_id = 'DEMO'"
    )
    return int(row["stored"]), int(row["rated"])


async def stored_now(pg_port: int) -> tuple[int, int]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=pg_port, user="postgres", database="cdrflow"
    )
    try:
        return await _counts(conn)
    finally:
        await conn.close()


async def wait_stored(
    pg_port: int, target: int, timeout: float
) -> tuple[int, int, int, float | None]:
    """Polls until `target` DEMO rows exist: (rows at start, rows, rated, when caught up)."""
    conn = await asyncpg.connect(
        host="127.0.0.1", port=pg_port, user="postgres", database="cdrflow"
    )
    try:
        first, rated = await _counts(conn)
        stored, last_change = first, time.perf_counter()
        deadline = last_change + timeout
        while stored < target:
            now = time.perf_counter()
            if now > deadline or now - last_change > STALL_SECONDS:
                return first, stored, rated, None
            await asyncio.sleep(0.2)
            count, rated = await _counts(conn)
            if count != stored:
                stored, last_change = count, time.perf_counter()
        return first, stored, rated, time.perf_counter()
    finally:
        await conn.close()


async def cold_burst(url: str, requests: int) -> tuple[float, int]:
    """`requests` concurrent GETs at a service nothing has called yet: (slowest s, not `0`)."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> tuple[float, bool]:
            start = time.perf_counter()
            async with session.get(url) as resp:
                ok = resp.status == 200 and await resp.text() == "0"
            return time.perf_counter() - start, ok

        answers = await asyncio.gather(*(one() for _ in range(requests)))
    return max(t for t, _ in answers), sum(1 for _, ok in answers if not ok)


def measure_ingest(
    stack: BenchStack, args: argparse.Namespace
) -> tuple[LoadResult, StoredResult | None]:
    """The compat GET under load, then how long the rater takes to store what was accepted."""
    ingest = stack.url("ingest")
    stored_before, rated_before = asyncio.run(stored_now(stack.pg_port))
    accepted_before = accepted_total(ingest)
    start = time.perf_counter()
    result = run_load(
        ingest + COMPAT_QUERY,
        seconds=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        expect="0",
        unique=UNIQUE,
    )
    load_end = time.perf_counter()
    log(
        f"compat submit GET: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
        f" p99 {result.p99_ms:.2f} ms, {result.errors:,} answers other than 0"
    )
    accepted_after = accepted_total(ingest)
    if accepted_before is None or accepted_after is None:
        log("ingest /metrics has no accepted-submissions counter; skipping the end-to-end row")
        return result, None
    accepted = accepted_after - accepted_before
    log(f"waiting (at most {args.drain_timeout:g} s) for the rater to store {accepted:,} CDRs")
    at_end, stored, rated, caught = asyncio.run(
        wait_stored(stack.pg_port, stored_before + accepted, args.drain_timeout)
    )
    finished = caught if caught is not None else time.perf_counter()
    summary = StoredResult(
        accepted=accepted,
        stored=stored - stored_before,
        rated=rated - rated_before,
        seconds=finished - start,
        load_seconds=load_end - start,
        lag_at_load_end=max(0, stored_before + accepted - at_end),
        drain_seconds=finished - load_end,
        caught_up=caught is not None,
    )
    log(
        f"end to end: {summary.stored:,} of {accepted:,} accepted CDRs stored"
        f" ({summary.stored_rate:,.0f}/s); "
        + ("caught up" if summary.caught_up else "did NOT catch up")
        + f" {summary.drain_seconds:.1f} s after the load"
    )
    return result, summary


def measure(stack: BenchStack, args: argparse.Namespace) -> Measurements:
    log(f"load tool: {tool_name()}")
    # First, and well before the measured runs: a fresh ingest pays one-off costs (credential
    # and principal caches empty) that the steady-state rows must not include, but that a
    # fleet of PBXs reconnecting after a deploy does see.
    cold_s, cold_errors = asyncio.run(
        cold_burst(stack.url("ingest") + COMPAT_QUERY, args.concurrency)
    )
    log(f"cold start: {args.concurrency} concurrent submits, slowest answered in {cold_s:.2f} s")
    log(f"bare FastAPI GET: {args.warmup:g} s warm-up + {args.duration:g} s, c={args.concurrency}")
    bare = run_load(
        stack.bare_url + "/ping",
        seconds=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        expect=None,
    )
    log(
        f"bare FastAPI GET: {bare.rps:,.0f} req/s, p50 {bare.p50_ms:.2f} ms,"
        f" p99 {bare.p99_ms:.2f} ms, {bare.errors:,} errors"
    )
    log(f"compat submit GET: {args.warmup:g} s warm-up + {args.duration:g} s")
    compat, stored = measure_ingest(stack, args)
    rate = bare.rps / 2
    log(f"compat submit GET paced at {rate:,.0f} req/s (half the bare rate), {args.duration:g} s")
    paced = run_load(
        stack.url("ingest") + COMPAT_QUERY,
        seconds=args.duration,
        warmup=args.warmup,
        concurrency=args.paced_connections,
        expect="0",
        unique=UNIQUE,
        rate=rate,
    )
    log(
        f"compat submit GET paced: {paced.rps:,.0f} req/s, p50 {paced.p50_ms:.2f} ms,"
        f" p99 {paced.p99_ms:.2f} ms, {paced.errors:,} answers other than 0"
    )

    log(f"aiokafka send_and_wait, {args.concurrency} senders, {args.duration:g} s")
    acked = asyncio.run(
        acked_senders(
            stack.bootstrap, BENCH_TOPIC, concurrency=args.concurrency, seconds=args.duration
        )
    )
    log(f"aiokafka send_and_wait: {acked.rate:,.0f} records/s, p50 {acked.p50_ms:.2f} ms")
    raw = run_raw_producer(stack, args, "compat-like events", None)
    raw_batch, batch = measure_batches(stack, args)
    memory = ingest_memory(stack.pid("ingest"))
    log(f"ingest memory: peak RSS {memory.peak_mb:.0f} MB, now {memory.now_mb:.0f} MB")
    return Measurements(
        bare=bare,
        compat=compat,
        raw_producer=raw,
        acked_senders=acked,
        stored=stored,
        paced=paced,
        paced_rate=rate,
        raw_batch_producer=raw_batch,
        batch=batch,
        batch_size=args.batch_size,
        batch_concurrency=args.batch_concurrency,
        memory=memory,
        cold_start_seconds=cold_s,
        cold_start_errors=cold_errors,
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
    )


def run_raw_producer(
    stack: BenchStack, args: argparse.Namespace, what: str, payloads: list[bytes] | None
) -> ProducerResult:
    log(f"raw aiokafka producer, {what}: {args.producer_messages:,} messages")
    raw = asyncio.run(
        raw_producer(
            stack.bootstrap,
            BENCH_TOPIC,
            messages=args.producer_messages,
            max_seconds=args.duration,
            payloads=payloads,
        )
    )
    log(f"raw aiokafka producer, {what}: {raw.messages:,} messages, {raw.rate:,.0f} msgs/s")
    return raw


def measure_batches(
    stack: BenchStack, args: argparse.Namespace
) -> tuple[ProducerResult, BatchResult | None]:
    """The raw producer with the batch's records, then `/v1/cdrs` (when ingest serves it).

    The raw baseline goes first: the batch load leaves the rater a backlog that would
    otherwise slow the baseline down and flatter the ratio.
    """
    raw = run_raw_producer(stack, args, "the /v1/cdrs records", kafka_payloads(args.batch_size))
    ingest = stack.url("ingest")
    paths = httpx.get(f"{ingest}/openapi.json", timeout=10).json().get("paths", {})
    if BATCH_PATH not in paths:
        log(f"ingest has no {BATCH_PATH}: skipping the batch row")
        return raw, None
    log(
        f"POST {BATCH_PATH}: {args.batch_size:,}-record NDJSON bodies,"
        f" {args.batch_concurrency} in flight, {args.warmup:g} s + {args.duration:g} s"
    )
    batch = asyncio.run(
        post_batches(
            ingest + BATCH_PATH,
            user="DEMO/DEMO",
            password="demopass",
            size=args.batch_size,
            seconds=args.duration,
            warmup=args.warmup,
            concurrency=args.batch_concurrency,
        )
    )
    log(
        f"POST {BATCH_PATH}: {batch.accepted:,} of {batch.records:,} records accepted,"
        f" {batch.rate:,.0f} CDRs/s, p50 {batch.p50_ms:.0f} ms a body"
    )
    return raw, batch


def ingest_memory(pid: int) -> Memory:
    """The ingest process's resident memory: its peak since it started (VmHWM), and now."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0]) / 1024  # kB -> MiB
    return Memory(peak_mb=fields.get("VmHWM", 0.0), now_mb=fields.get("VmRSS", 0.0))


def on_stopped_stack(stack: BenchStack) -> dict[str, Any]:
    """What a section that starts its own processes needs of the stack, after its services
    are stopped so they take no CPU from it."""
    for proc in stack.services.values():
        proc.stop()
    assert stack.pg is not None
    return {
        "pg_port": stack.pg_port,
        "bootstrap": stack.bootstrap,
        "database_url": stack.pg.url(),
        "workdir": stack.workdir,
        "free_port": free_port,
        "log": log,
    }


def measure_raters(stack: BenchStack, args: argparse.Namespace) -> RaterMeasurements:
    """The rater rows, each run on rater processes of its own."""
    return measure_rater(
        **on_stopped_stack(stack), events=args.rater_events, distinct=DISTINCT_NUMBERS
    )


def measure_notifiers(stack: BenchStack, args: argparse.Namespace) -> NotifierMeasurements:
    """The notifier rows, last: each run starts its own notifier."""
    return measure_notifier(
        **on_stopped_stack(stack),
        deliveries=args.notifier_deliveries,
        duration=args.duration,
        warmup=args.warmup,
        drain_timeout=args.drain_timeout,
    )


def measure_query_reads(stack: BenchStack, args: argparse.Namespace) -> QueriesMeasurements:
    """The queries rows, after the notifier's: they load millions of rows into `cdr`."""
    return measure_queries(**on_stopped_stack(stack), rows=args.queries_rows)


def only_queries(args: argparse.Namespace) -> str:
    """`--only queries`: that section on infrastructure of its own, with the report's header."""
    with standalone("queries") as infra:
        queries = measure_queries(**infra.section_args(), rows=args.queries_rows)
    return (
        "# cdrflow benchmarks (the queries section alone)\n\n"
        "Written by `bench/run.py --only queries`; `make bench` writes every section.\n\n"
        f"- machine: {machine()}\n"
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- git: `{git_revision()}`\n" + render_queries_section(queries)
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. a CI timeout) takes the same path as Ctrl-C, so the stack is torn down.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.only == "queries":
        try:
            text = only_queries(args)
        except KeyboardInterrupt:
            log("interrupted; everything started was stopped")
            return 130
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        log(f"wrote {args.output}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="cdrflow-bench-"))
    log(f"working in {workdir}")
    try:
        with BenchStack(workdir, log) as stack:
            measurements = measure(stack, args)
            rater = measure_raters(stack, args)
            notifier = measure_notifiers(stack, args)
            queries = measure_query_reads(stack, args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            render(measurements)
            + render_section(rater)
            + render_notifier_section(notifier)
            + render_queries_section(queries),
            encoding="utf-8",
        )
        log(f"wrote {args.output}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    finally:
        if args.keep_tmp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

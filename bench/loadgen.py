"""HTTP load generator for `bench/run.py`: aiohttp workers hit one loopback URL for a fixed time.

Run as its own process (`python bench/loadgen.py --url ...`) so that the generator has an event
loop and a core of its own; it prints one JSON object (a `LoadResult`) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import secrets
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

ERROR_SAMPLES = 5  # distinct error kinds kept for the report


@dataclass
class LoadResult:
    """One measured run against one URL; `ok` counts answers equal to the expected body."""

    tool: str
    url: str
    concurrency: int
    seconds: float
    requests: int
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    warmup_requests: int = 0
    warmup_ok: int = 0
    generator_cpu: float | None = None  # generator CPU seconds / wall seconds, 1.0 = one core
    error_samples: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def percentile(sorted_values: list[float] | array[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Phase:
    """Counters of one phase (warm-up or measured), shared by all workers of that phase."""

    deadline: float
    max_requests: int
    issued: int = 0
    requests: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))


Urls = Callable[[], Any]  # the next request's URL (the same one, or one with a fresh id)


def url_source(url: str, unique: str | None) -> Urls:
    """The URL, parsed once; with `unique`, each request appends `&<unique>=<fresh id>`.

    Ids are a random 4-character run prefix and a base-36 counter: at most 15 characters
    (the compat ExternalID limit) for 36**11 requests, and never repeated across runs.
    """
    from yarl import URL

    if unique is None:
        target = URL(url, encoded=True)
        return lambda: target
    prefix = f"{url}&{unique}={secrets.token_hex(2)}"
    counter = itertools.count()

    def fresh() -> Any:
        return URL(f"{prefix}{_base36(next(counter))}", encoded=True)

    return fresh


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = digits[n % 36]
    while n >= 36:
        n //= 36
        out = digits[n % 36] + out
    return out


async def _one(session: Any, url: Any, phase: _Phase, expect: bytes | None, started: float) -> bool:
    """One GET, counted in `phase`, its latency measured from `started`; False on a
    connection-level failure."""
    import aiohttp

    try:
        async with session.get(url) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        phase.requests += 1
        phase.errors[type(exc).__name__] += 1
        return False
    phase.latencies.append(time.perf_counter() - started)
    phase.requests += 1
    if status == 200 and (expect is None or body == expect):
        phase.ok += 1
    else:
        phase.errors[f"HTTP {status}: {body[:40].decode(errors='replace')}"] += 1
    return True


async def _worker(session: Any, urls: Urls, phase: _Phase, expect: bytes | None) -> None:
    perf = time.perf_counter
    while True:
        start = perf()
        if start >= phase.deadline or phase.issued >= phase.max_requests:
            return
        phase.issued += 1
        if not await _one(session, urls(), phase, expect, start):
            # A dead server fails instantly; back off so the loop does not spin on a core.
            await asyncio.sleep(0.01)


async def _paced(
    session: Any, urls: Urls, phase: _Phase, expect: bytes | None, rate: float
) -> None:
    """Open loop: request i is due at start + i/rate whatever the answers before it, and its
    latency counts from when it was due, so a server falling behind shows in the p99 instead
    of slowing the generator down (no coordinated omission)."""
    start = time.perf_counter()
    pending: set[asyncio.Task[bool]] = set()
    for i in itertools.count():
        due = start + i / rate
        if due >= phase.deadline or phase.issued >= phase.max_requests:
            break
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        phase.issued += 1
        task = asyncio.create_task(_one(session, urls(), phase, expect, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def _run_phase(
    session: Any,
    urls: Urls,
    seconds: float,
    concurrency: int,
    expect: bytes | None,
    cap: int,
    rate: float | None = None,
) -> tuple[_Phase, float, float]:
    phase = _Phase(deadline=time.perf_counter() + seconds, max_requests=cap)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if rate is not None:
        await _paced(session, urls, phase, expect, rate)
    else:
        await asyncio.gather(*(_worker(session, urls, phase, expect) for _ in range(concurrency)))
    return phase, time.perf_counter() - wall0, time.process_time() - cpu0


async def generate(
    url: str,
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
    expect: bytes | None,
    max_requests: int,
    unique: str | None = None,
    rate: float | None = None,
) -> LoadResult:
    import aiohttp

    urls = url_source(url, unique)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=30),
        auto_decompress=False,
    ) as session:
        warm: _Phase | None = None
        if warmup > 0:
            warm, _, _ = await _run_phase(
                session, urls, warmup, concurrency, expect, max_requests, rate
            )
        phase, wall, cpu = await _run_phase(
            session, urls, seconds, concurrency, expect, max_requests, rate
        )
    ordered = sorted(phase.latencies)
    return LoadResult(
        tool=f"aiohttp {aiohttp.__version__} load generator (separate process)",
        url=url,
        concurrency=concurrency,
        seconds=wall,
        requests=phase.requests,
        ok=phase.ok,
        errors=phase.requests - phase.ok,
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        warmup_requests=warm.requests if warm else 0,
        warmup_ok=warm.ok if warm else 0,
        generator_cpu=cpu / wall if wall > 0 else None,
        error_samples=dict(phase.errors.most_common(ERROR_SAMPLES)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="loopback URL to GET")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--expect", default=None, help="body every answer must equal")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="upper bound per phase")
    parser.add_argument(
        "--unique", default=None, help="query parameter given a fresh value on every request"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests/s, paced (open loop); --concurrency then caps the connections",
    )
    args = parser.parse_args()
    if not is_loopback_url(args.url):
        parser.error("only loopback URLs may be loaded (127.0.0.0/8, ::1, localhost)")
    if args.concurrency < 1 or args.duration <= 0:
        parser.error("--concurrency must be >= 1 and --duration > 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    coro = generate(
        args.url,
        seconds=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        expect=args.expect.encode() if args.expect is not None else None,
        max_requests=args.max_requests,
        unique=args.unique,
        rate=args.rate,
    )
    try:
        import uvloop
    except ImportError:  # uvloop only makes the generator cheaper; asyncio works too
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    sys.stdout.write(result.to_json() + "\n")


if __name__ == "__main__":
    main()

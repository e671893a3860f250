"""HTTP load generator for `bench/run.py`: aiohttp workers hit one loopback URL for a fixed time.

Run as its own process (`python bench/loadgen.py --url ...`) so that the generator has an event
loop and a core of its own; it prints one JSON object (a `LoadResult`) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import sys
import time
from array import array
from collections import Counter
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


async def _worker(session: Any, url: Any, phase: _Phase, expect: bytes | None) -> None:
    import aiohttp

    perf = time.perf_counter
    latencies = phase.latencies
    while True:
        start = perf()
        if start >= phase.deadline or phase.issued >= phase.max_requests:
            return
        phase.issued += 1
        try:
            async with session.get(url) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.requests += 1
            phase.errors[type(exc).__name__] += 1
            # A dead server fails instantly; back off so the loop does not spin on a core.
            await asyncio.sleep(0.01)
            continue
        latencies.append(perf() - start)
        phase.requests += 1
        if status == 200 and (expect is None or body == expect):
            phase.ok += 1
        else:
            phase.errors[f"HTTP {status}: {body[:40].decode(errors='replace')}"] += 1


async def _run_phase(
    session: Any, url: Any, seconds: float, concurrency: int, expect: bytes | None, cap: int
) -> tuple[_Phase, float, float]:
    phase = _Phase(deadline=time.perf_counter() + seconds, max_requests=cap)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(_worker(session, url, phase, expect) for _ in range(concurrency)))
    return phase, time.perf_counter() - wall0, time.process_time() - cpu0


async def generate(
    url: str,
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
    expect: bytes | None,
    max_requests: int,
) -> LoadResult:
    import aiohttp
    from yarl import URL

    target = URL(url, encoded=True)  # parsed once, not per request
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
                session, target, warmup, concurrency, expect, max_requests
            )
        phase, wall, cpu = await _run_phase(
            session, target, seconds, concurrency, expect, max_requests
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
    args = parser.parse_args()
    if not is_loopback_url(args.url):
        parser.error("only loopback URLs may be loaded (127.0.0.0/8, ::1, localhost)")
    if args.concurrency < 1 or args.duration <= 0:
        parser.error("--concurrency must be >= 1 and --duration > 0")
    coro = generate(
        args.url,
        seconds=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        expect=args.expect.encode() if args.expect is not None else None,
        max_requests=args.max_requests,
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

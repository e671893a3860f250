"""`POST /v1/cdrs` NDJSON batches for `bench/run.py`, and the same records as Kafka payloads."""

from __future__ import annotations

import asyncio
import secrets
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import orjson
from kafka_baseline import sample_payload
from loadgen import percentile

START = "2026-01-05T12:00:00+00:00"


@dataclass
class BatchResult:
    records: int  # records sent in measured batches
    accepted: int  # of them answered 0
    batches: int
    seconds: float
    record_bytes: int  # of one NDJSON line
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def ndjson_line(external_id: str) -> bytes:
    """One native record: every record of the bench has its own external_id, so dedupe keeps
    (and checks) a key for each, as it would for a PBX's real calls."""
    return orjson.dumps(
        {
            "originating_number": "100",
            "destination_number": "16138220000",
            "start_time": START,
            "duration": 90,
            "external_id": external_id,
        }
    )


class Bodies:
    """NDJSON bodies of `size` records with ids never sent before (a run prefix + counter)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._prefix = "b" + secrets.token_hex(2)
        self._next = 0

    def next(self) -> bytes:
        first, self._next = self._next, self._next + self.size
        return b"\n".join(
            ndjson_line(f"{self._prefix}{i}") for i in range(first, first + self.size)
        )


def kafka_payloads(size: int) -> list[bytes]:
    """The events ingest puts on Kafka for `size` such records: the raw producer's payloads."""
    start = datetime.fromisoformat(START)
    return [sample_payload(source="api", start=start, external_id=f"k{i}") for i in range(size)]


async def post_batches(
    url: str,
    *,
    user: str,
    password: str,
    size: int,
    seconds: float,
    warmup: float,
    concurrency: int,
) -> BatchResult:
    """`concurrency` clients POST batches of `size` records for `seconds` (after `warmup`);
    bodies are built while others are in flight, so the server's pace sets the rate."""
    bodies = Bodies(size)
    auth = aiohttp.BasicAuth(user, password)
    headers = {"content-type": "application/x-ndjson"}
    latencies: array[float] = array("d")
    counts = {"records": 0, "accepted": 0, "batches": 0}
    errors: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client(until: float, measured: bool) -> None:
            while time.perf_counter() < until:
                body = bodies.next()
                t0 = time.perf_counter()
                async with session.post(url, data=body, auth=auth, headers=headers) as resp:
                    answer = await resp.read()
                    status = resp.status
                if not measured:
                    continue
                latencies.append(time.perf_counter() - t0)
                counts["batches"] += 1
                counts["records"] += size
                if status == 200:
                    counts["accepted"] += int(orjson.loads(answer)["accepted"])
                else:
                    kind = f"HTTP {status}: {answer[:60].decode(errors='replace')}"
                    errors[kind] = errors.get(kind, 0) + 1

        if warmup > 0:
            until = time.perf_counter() + warmup
            await asyncio.gather(*(client(until, False) for _ in range(concurrency)))
        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(*(client(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return BatchResult(
        records=counts["records"],
        accepted=counts["accepted"],
        batches=counts["batches"],
        seconds=elapsed,
        record_bytes=len(ndjson_line(f"{bodies._prefix}0")),
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        errors=errors,
    )

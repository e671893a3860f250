"""CPU cost of one 10,000-record `POST /v1/cdrs` NDJSON body, without I/O.

Times what the route does between reading the body and handing the answer to the socket:
`parse_native`, the dedupe keys, the per-record answers and their orjson encoding. Pure
CPU, so it is steady on a noisy machine where the end-to-end bench (`make bench`) is not.
The collector runs with `python -m cdr_ingest`'s thresholds: its passes over the records a
body allocates are part of the cost. Medians of each stage, and the best total.

    .venv/bin/python bench/parse_micro.py [--records 10000] [--rounds 15] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time
from datetime import UTC, datetime

import orjson

from cdr_ingest.__main__ import GC_THRESHOLDS
from cdr_ingest.batch_routes import _answers, to_submit
from cdr_ingest.dedupe import Outcome
from cdr_ingest.parsing import parse_native
from cdr_ingest.service import ACCEPTED
from cdrmodel.principals import Principal

PRINCIPAL = Principal("DB", "ACC", "", None, None, "America/Toronto", "CA", "CAD")
NOW = datetime(2026, 3, 2, 17, 0, 0, tzinfo=UTC)
NDJSON = "application/x-ndjson"


def body(records: int) -> bytes:
    """Realistic records: an ExternalID each, ISO start times with and without an offset."""
    lines = []
    for n in range(records):
        start = f"2026-03-02T{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}"
        lines.append(
            orjson.dumps(
                {
                    "originating_number": "6135550100",
                    "destination_number": f"1613822{n % 10000:04d}",
                    "start_time": start + ("+00:00" if n % 2 else ""),
                    "duration": n % 3600,
                    "external_id": f"call-{n:09d}",
                    "disposition": "ANSWERED",
                }
            )
        )
    return b"\n".join(lines)


def route_cpu(payload: bytes) -> bytes:
    """The route's pure work on one body, every record taken (the common case)."""
    results = parse_native(payload, content_type=NDJSON, principal=PRINCIPAL, now=NOW)
    events, keys = to_submit(results)
    assert all(k is not None for k in keys)
    outcomes = [Outcome(ACCEPTED, e.cdr_id) for e in events]
    answers, _ = _answers(results, outcomes)
    return orjson.dumps({"accepted": len(outcomes), "results": answers}, default=str)


def stage_times(payload: bytes, rounds: int) -> dict[str, float]:
    """Median seconds of each stage over `rounds` runs, and the fastest whole run."""
    samples: dict[str, list[float]] = {"parse": [], "keys": [], "answers": [], "total": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        results = parse_native(payload, content_type=NDJSON, principal=PRINCIPAL, now=NOW)
        t1 = time.perf_counter()
        events, keys = to_submit(results)
        t2 = time.perf_counter()
        outcomes = [Outcome(ACCEPTED, e.cdr_id) for e in events]
        answers, _ = _answers(results, outcomes)
        orjson.dumps({"accepted": len(outcomes), "results": answers}, default=str)
        t3 = time.perf_counter()
        assert len(keys) == len(results)
        for name, value in (("parse", t1 - t0), ("keys", t2 - t1), ("answers", t3 - t2)):
            samples[name].append(value)
        samples["total"].append(t3 - t0)
    times = {name: statistics.median(values) for name, values in samples.items()}
    times["best"] = min(samples["total"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    payload = body(args.records)
    route_cpu(payload)  # warm caches (zoneinfo, imports)
    times = stage_times(payload, args.rounds)
    n = args.records
    for name, seconds in times.items():
        print(f"{name:8} {seconds * 1000:8.1f} ms  {seconds / n * 1e6:6.2f} us/record")
    print(f"rate     {n / times['total']:8.0f} records/s (route CPU only, median total)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(route_cpu, payload)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()

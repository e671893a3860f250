"""One worker process for CPU-heavy admin work (parsing rate decks), started on first use.

A thread is not enough: while a thread parses, the event loop's thread must win the GIL back
after every socket operation, and a call submitted during a 200,000-line upload took seconds
to be rated. A separate process leaves this one's GIL to the consumer. It is started with
`spawn` (a fork of a process running an event loop and Kafka threads is unsafe) and kept, so
only the first upload pays for its start; if it dies, the next upload starts another. It
dies with the rater, however the rater ends (kill -9 included): a worker outliving it would
hold the pool's pipes open forever.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _die_with(parent: int) -> None:
    """The worker's initializer: SIGKILL when the rater ends (Linux PR_SET_PDEATHSIG; it
    follows the thread that started the worker, which is the rater's event loop thread).
    SIGKILL, not SIGTERM: the worker holds nothing to clean up, and a SIGTERM handler in it
    (coverage installs one in `make test`) could keep it alive once its rater is gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # the rater ended before the line above took effect
        os._exit(0)


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with,
                initargs=(os.getpid(),),
            )
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def run(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in the worker process (`fn` and its arguments must pickle)."""
    pool = _executor()
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    except BrokenProcessPool:
        _discard(pool)  # the worker died (killed, out of memory): one retry on a fresh one
        return await asyncio.get_running_loop().run_in_executor(_executor(), fn, *args)

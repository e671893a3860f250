"""Sending the batches of `cdrflow submit`: concurrent requests, retries, a clean stop.

Only "not taken, try again" is retried: HTTP 503 (and the 502/504/429 of proxies in front),
a per-record 50503 inside a 200 answer (only those records go again), connection errors and
timeouts; with exponential backoff and jitter, or the server's `Retry-After`. Everything else
is the record's final answer. A batch is written to the state file only once every record
in it has a final answer, so an interrupted or failed run resumes exactly there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import stamina

from cdr_ingest.service import UNAVAILABLE
from cdr_ingest.submit_files import ENDPOINTS, LOCALLY_REFUSED, Batch, InputFormat, encode_body
from cdr_ingest.submit_state import SubmitState

EXIT_USAGE, EXIT_UNAVAILABLE = 2, 3  # process exit codes of `cdrflow submit` for a Fatal
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BODY_REFUSED = frozenset({400, 413, 422})
MAX_RETRY_AFTER = 120.0
UNREADABLE_RESULT = -1  # a result without an integer code: counted, never retried


@dataclass(frozen=True)
class Target:
    url: str
    database: str
    account: str
    password: str = field(repr=False)
    format: InputFormat
    timezone: str | None = None

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + ENDPOINTS[self.format].path

    def headers(self) -> dict[str, str]:
        user = f"{self.database}/{self.account}:{self.password}".encode()
        return {
            "authorization": "Basic " + base64.b64encode(user).decode("ascii"),
            "content-type": ENDPOINTS[self.format].content_type,
        }


@dataclass(frozen=True)
class Options:
    concurrency: int = 4
    retries: int = 8
    timeout: float = 60.0
    grace: float = 10.0
    wait_initial: float = 0.5
    wait_max: float = 30.0


class Transient(Exception):
    """Nothing (or not everything) was taken; sending again is safe and may succeed."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Fatal(Exception):
    """The run cannot go on; `exit_code` is what the command exits with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Outcome:
    interrupted: bool = False
    fatal: Fatal | None = None
    messages: dict[int, str] = field(default_factory=dict)


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare enough to let the backoff decide
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    return ""


class Sender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        options: Options,
    ) -> None:
        self._session = session
        self._target = target
        self._options = options
        self._headers = target.headers()
        self._params = {"tz": target.timezone} if target.timezone else {}
        self.messages: dict[int, str] = {}

    @property
    def endpoint(self) -> str:
        return self._target.endpoint

    @staticmethod
    def _should_retry(exc: Exception) -> bool | float:
        if isinstance(exc, Transient):
            return exc.retry_after if exc.retry_after is not None else True
        return isinstance(exc, aiohttp.ClientError | TimeoutError)

    async def send(self, batch: Batch) -> Counter[int]:
        """Final codes for every record of `batch`; raises what stayed transient after the
        retries (the caller stops the run: the batch is not finished)."""
        counts: Counter[int] = Counter(
            {LOCALLY_REFUSED: len(batch.refused)} if batch.refused else {}
        )
        if batch.refused:
            self.messages.setdefault(LOCALLY_REFUSED, batch.refused[0])
        pending = list(range(len(batch.records)))
        if not pending:
            return counts
        async for attempt in stamina.retry_context(
            on=self._should_retry,
            attempts=self._options.retries + 1,
            timeout=None,
            wait_initial=self._options.wait_initial,
            wait_max=self._options.wait_max,
        ):
            with attempt:
                codes = await self._post([batch.records[i] for i in pending])
                again = [i for i, code in zip(pending, codes, strict=True) if code == UNAVAILABLE]
                counts.update(code for code in codes if code != UNAVAILABLE)
                pending = again
                if pending:
                    raise Transient(f"{len(pending)} records answered 50503")
        return counts

    async def _post(self, records: list[bytes]) -> list[int]:
        body = encode_body(self._target.format, records)
        timeout = aiohttp.ClientTimeout(total=self._options.timeout)
        async with self._session.post(
            self._target.endpoint,
            data=body,
            headers=self._headers,
            params=self._params,
            timeout=timeout,
        ) as resp:
            raw = await resp.read()
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                payload = None
            if resp.status == 200 and isinstance(payload, dict):
                return self._codes(payload, len(records))
            message = _message(payload) or raw[:200].decode("utf-8", "replace")
            if resp.status in (401, 403):
                raise Fatal(
                    f"{self._target.endpoint} refused the credentials: {message}", EXIT_USAGE
                )
            if resp.status in RETRY_STATUSES:
                raise Transient(
                    f"HTTP {resp.status} {message}".strip(),
                    retry_after_seconds(resp.headers.get("retry-after")),
                )
            if resp.status in BODY_REFUSED:  # the server's final word on this whole body
                self.messages.setdefault(resp.status, message)
                return [resp.status] * len(records)
            # A 404 or 405 is the wrong URL, not an answer about these records: counting them
            # would mark the whole file done.
            raise Fatal(
                f"{self._target.endpoint} answered HTTP {resp.status} {message}; "
                "is --url an ingest service?",
                EXIT_UNAVAILABLE,
            )

    def _codes(self, payload: dict[str, Any], count: int) -> list[int]:
        results = payload.get("results")
        if not isinstance(results, list) or len(results) != count:
            raise Fatal(
                f"{self._target.endpoint} answered {count} records with "
                f"{len(results) if isinstance(results, list) else 'no'} results; "
                "is --url an ingest service?",
                EXIT_UNAVAILABLE,
            )
        codes = [0] * count
        for position, result in enumerate(results):
            entry = result if isinstance(result, dict) else {}
            index, code = entry.get("index", position), entry.get("code")
            code = code if isinstance(code, int) else UNREADABLE_RESULT
            codes[index if isinstance(index, int) and 0 <= index < count else position] = code
            message = _message(result)
            if message and code not in (0, UNAVAILABLE):
                self.messages.setdefault(code, message)
        return codes


async def run(
    batches: Iterator[Batch],
    state: SubmitState,
    sender: Sender,
    options: Options,
    *,
    on_batch: Callable[[Batch, Counter[int]], None] = lambda _b, _c: None,
    on_stop: Callable[[], None] = lambda: None,
) -> Outcome:
    """Send every batch not yet finished in `state`; Ctrl-C stops cleanly (first: no new
    batches, in-flight ones get `options.grace` seconds; second: stop now)."""
    outcome = Outcome(messages=sender.messages)
    stop = asyncio.Event()
    queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=options.concurrency)
    sending: set[asyncio.Task[None]] = set()

    def halt(fatal: Fatal | None = None) -> None:
        outcome.fatal = outcome.fatal or fatal
        stop.set()

    def interrupt() -> None:
        if stop.is_set():
            for task in sending:
                task.cancel()  # a second Ctrl-C: do not wait for answers
            return
        outcome.interrupted = True
        on_stop()
        halt()

    async def feed() -> None:
        end = object()
        try:
            while not stop.is_set():
                batch = await asyncio.to_thread(next, batches, end)
                if not isinstance(batch, Batch):
                    break
                if not state.is_done(batch.key):
                    await queue.put(batch)
        except (OSError, ValueError) as exc:
            halt(Fatal(f"reading the input failed: {exc}", EXIT_USAGE))
        for _ in range(options.concurrency):
            await queue.put(None)

    async def work() -> None:
        me = asyncio.current_task()
        assert me is not None
        while (batch := await queue.get()) is not None and not stop.is_set():
            sending.add(me)
            try:
                counts = await sender.send(batch)
            except Fatal as exc:
                halt(exc)
                return
            except (Transient, aiohttp.ClientError, TimeoutError) as exc:
                halt(
                    Fatal(
                        f"{sender.endpoint} still failing after {options.retries} retries "
                        f"({exc}); nothing more was sent",
                        EXIT_UNAVAILABLE,
                    )
                )
                return
            finally:
                sending.discard(me)
            state.finish(batch.key, counts)
            state.save()
            on_batch(batch, counts)

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    workers = [asyncio.create_task(work()) for _ in range(options.concurrency)]
    feeder = asyncio.create_task(feed())
    stopped = asyncio.create_task(stop.wait())
    finished = asyncio.gather(*workers, return_exceptions=True)
    either: list[asyncio.Future[Any]] = [finished, stopped]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    # On a stop, idle workers go now and busy ones get the grace period to hear their
    # answers (each answer saved is a batch not sent again on resume).
    await _drain(workers, sending, options.grace)
    await finished
    feeder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeder
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.remove_signal_handler(signal.SIGINT)
    for task in workers:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    return outcome


async def _drain(
    workers: list[asyncio.Task[None]], sending: set[asyncio.Task[None]], grace: float
) -> None:
    for task in workers:
        if task not in sending:
            task.cancel()
    _, late = await asyncio.wait(workers, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.wait(workers)

"""Pushing deliveries to CRMs: claim due rows, POST signed bodies, record every attempt.

At-least-once: a delivery is leased (FOR UPDATE SKIP LOCKED + locked_until), pushed, and its
outcome written afterwards. A notifier killed mid-push leaves the lease to expire and the
delivery is pushed again with the same webhook-id, so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import asyncpg
import stamina
from prometheus_client import Counter, Gauge, Histogram
from structlog.contextvars import bind_contextvars

from cdr_notifier.formats import acknowledged, encode, sign
from cdr_notifier.leases import Attempt, Outcome, SubscriptionKey, claim_due, record_outcomes
from cdr_notifier.secretbox import SecretBox
from cdr_notifier.settings import NotifierSettings
from cdr_notifier.urls import endpoint_of, refusal
from cdrmodel import tracing
from cdrmodel.db import is_transient, pg_text

log = logging.getLogger(__name__)

PUSHES = Counter("cdrflow_notifier_push_attempts_total", "Push attempts", ["outcome"])
_DELIVERED, _FAILED = PUSHES.labels("delivered"), PUSHES.labels("failed")
PUSH_SECONDS = Histogram("cdrflow_notifier_push_seconds", "Latency of push attempts", ["endpoint"])
DELIVERIES = Counter(
    "cdrflow_notifier_deliveries_total", "Deliveries that ended, by status", ["status"]
)
_ENDED = {state: DELIVERIES.labels(state) for state in ("delivered", "dead")}
BREAKER_OPEN = Gauge(
    "cdrflow_notifier_breaker_open", "1 while an endpoint's circuit breaker is open", ["endpoint"]
)
BREAKER_OPENS = Counter(
    "cdrflow_notifier_breaker_opens_total", "Times an endpoint's breaker opened", ["endpoint"]
)
_MAX_RESPONSE = 64 * 1024
_MAX_ERROR_CHARS = 2000
_EXCERPT_BYTES = 2048  # of each reply, kept on its attempt row
# What one push came to: HTTP status, error (None: delivered), Retry-After seconds, latency
# in ms, and the start of the reply.
Posted = tuple[int | None, str | None, float | None, int, str | None]

T = TypeVar("T")
# A claimed delivery: its row, its subscription, and when it was claimed (monotonic).
Claimed = tuple[asyncpg.Record, SubscriptionKey, float]


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(attempt: int, *, base: float, cap: float, factor: float = 4.0) -> float:
    """Exponential with full jitter: U(0, min(cap, base·factor^(n-1))) after attempt n. With
    the defaults (2 s, times 4, 6 h) the retries after attempts 1-3 come within seconds, 4-6
    within minutes, 7 on within hours (docs/delivery.md has the table)."""
    raw = min(cap, base * (factor ** max(0, attempt - 1)))
    return raw * random.random()


class Breaker:
    """One endpoint's circuit breaker. `failures` pushes in a row that fail (no answer, a
    timeout, 429 or 5xx) open it: its deliveries wait, untried, until the pause is over; then
    one delivery probes it. A success closes it; a failed probe opens it again for twice as
    long (up to `max_open`)."""

    def __init__(self, *, failures: int, open_for: float, max_open: float) -> None:
        self._threshold = failures
        self._first = open_for
        self._max = max_open
        self._failed = 0
        self._pause = open_for
        self.open_until: float | None = None  # monotonic
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def admit(self, now: float) -> bool:
        """True when a push may go now (closed, or the one probe of a half-open breaker)."""
        if self.open_until is None:
            return True
        if now < self.open_until or self._probing:
            return False
        self._probing = True
        return True

    def record(self, failed: bool, now: float) -> bool:
        """The outcome of an admitted push; True when it opened (or re-opened) the breaker."""
        probe, self._probing = self._probing, False
        if not failed:
            self._failed, self._pause, self.open_until = 0, self._first, None
            return False
        self._failed += 1
        if probe:
            self._pause = min(self._max, self._pause * 2)
        elif self._failed < self._threshold or self.open_until is not None:
            return False
        self.open_until = now + self._pause
        return True


class Endpoint:
    """One CRM endpoint (scheme, host, port): its claimed deliveries in claim order, the
    workers pushing them (at most `slots`, each one push at a time, back to back as a plain
    POST loop would), and its breaker."""

    def __init__(self, name: str, slots: int, breaker: Breaker) -> None:
        self.name = name
        self.slots = slots
        self.workers = 0
        self.queue: deque[Claimed] = deque()
        self.breaker = breaker
        # Its metric children, looked up once (a labels() call per push shows in profiles).
        self.seconds = PUSH_SECONDS.labels(name)
        self.open_gauge = BREAKER_OPEN.labels(name)
        self.opens = BREAKER_OPENS.labels(name)


class Dispatcher:
    """A continuous pipeline: claims due deliveries as room frees up, queues each on its
    endpoint, where up to `push_endpoint_concurrency` workers push them one after another,
    and writes outcomes in small groups. Nothing waits for the slowest push of a round: a CRM
    that hangs holds at most `push_subscription_cap` claimed rows per subscription and
    `push_endpoint_concurrency` connections, and its breaker stops claims of its rows from
    turning into attempts once it keeps failing."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        settings: NotifierSettings,
        wake: asyncio.Event,
        secrets: SecretBox,
    ) -> None:
        self._pool = pool
        self._session = session
        self._settings = settings
        self._wake = wake
        self._secrets = secrets
        self._slots = asyncio.Semaphore(settings.push_concurrency)
        self._timeout = aiohttp.ClientTimeout(
            total=settings.push_timeout, connect=settings.push_connect_timeout
        )
        self._endpoints: dict[str, Endpoint] = {}
        self._held: dict[SubscriptionKey, int] = {}  # claimed rows not yet written back
        self._holding = 0
        self._room = asyncio.Event()  # a claimed row was written back
        # A subscription is claimed for again once a quarter of its cap is free: fewer, larger
        # claims, and still most of its cap queued ahead of its endpoint's workers.
        cap = settings.push_subscription_cap
        self._refill = cap - max(1, cap // 4)
        # A row written back left its subscription at or under that mark: a claim may find
        # rows of it again. (One still over it, passed over by claims, gives them nothing.)
        self._claimable = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._ready = asyncio.Event()  # outcomes wait to be written
        self._tasks: set[asyncio.Task[None]] = set()
        # Rows held at most: what is in flight at most, and twice a claim or a subscription's
        # cap beyond that, so every endpoint's workers have rows queued while a claim is
        # made and one CRM that hangs holds well under half. (Twice a claim alone, 400, kept
        # nine fast CRMs' 144 workers waiting for rows.)
        self._capacity = settings.push_concurrency + 2 * max(
            settings.push_claim_batch, settings.push_subscription_cap
        )
        # Subscriptions whose endpoint's breaker is open: passed over by claims until it
        # closes or may be probed, so rows that would only be handed back take no room.
        self._paused: dict[SubscriptionKey, Endpoint] = {}
        self._draining = False  # graceful shutdown: no more claims (`drain`)
        # The lease covers a wait for an endpoint slot of two push timeouts, a push, and 10 s
        # for the outcome's write and the clocks (the lease is the database's); a
        # row that waited longer goes back untried (`_attempt`), so the lease need not cover
        # a hanging endpoint's whole queue, and a killed notifier's rows are due again soon.
        self.lease = 3 * settings.push_timeout + 10

    async def run(self) -> None:
        """Claims and writes outcomes until cancelled or drained (`drain`); a failure of
        either (not passing PostgreSQL trouble, which they wait out) ends both, and the
        supervisor reports it."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write_outcomes())
                group.create_task(self._claim_forever())
        finally:
            for task in list(self._tasks):
                task.cancel()

    def drain(self) -> None:
        """Graceful shutdown: no more claims; the pushes under way finish and are recorded;
        claimed rows not yet pushed go back to pending, due at once, so another notifier
        takes them without waiting out the lease. `run` returns once every row this
        dispatcher holds is written back (the supervisor cancels it if that takes too long:
        the leases then expire as after a crash)."""
        self._draining = True
        now = datetime.now(UTC)
        for endpoint in self._endpoints.values():
            while endpoint.queue:
                d, key, _ = endpoint.queue.popleft()
                self._outcomes.append(_untried(d, key, now))
        for event in (self._ready, self._wake, self._room, self._claimable):
            event.set()  # the writer and the claimer look at `_draining` again

    # -- claiming -----------------------------------------------------------------------

    async def _claim_forever(self) -> None:
        cfg = self._settings
        refill = self._refill
        while not self._draining:
            free = self._capacity - self._holding
            if free < min(cfg.push_claim_batch, self._capacity) // 4 + 1:
                self._room.clear()
                await self._room.wait()
                continue
            full = {k for k, n in self._held.items() if n > refill}
            now = time.monotonic()
            for key, endpoint in list(self._paused.items()):
                until = endpoint.breaker.open_until
                if until is None or now >= until:
                    del self._paused[key]  # closed, or due for its probe
                else:
                    full.add(key)
            limit = min(free, cfg.push_claim_batch)
            # Cleared before the search, so what happens while it runs ends the wait after it.
            self._wake.clear()
            self._claimable.clear()
            claimed = await self._retrying(
                self._claim, limit, list(full), what="claiming deliveries"
            )
            if self._draining:  # drain() came while the claim ran: its rows go back
                now_utc = datetime.now(UTC)
                for d in claimed:
                    key = (d["database_id"], d["subscription_id"])
                    self._hold(key)
                    self._outcomes.append(_untried(d, key, now_utc))
                self._ready.set()
                return
            if not claimed:
                # Nothing due, or all of it of full subscriptions. Searching again as each
                # row is written back would walk past every due row of those each time; a row
                # that leaves its subscription claimable ends the wait, new rows wake us, and
                # a retry or a paused endpoint's probe comes due by the idle poll.
                await self._idle()
                continue
            began = time.monotonic()
            touched: dict[str, Endpoint] = {}
            for d in claimed:
                key = (d["database_id"], d["subscription_id"])
                self._hold(key)
                endpoint = self._endpoint(d["url"])
                endpoint.queue.append((d, key, began))
                touched[endpoint.name] = endpoint
            for endpoint in touched.values():
                for _ in range(min(endpoint.slots - endpoint.workers, len(endpoint.queue))):
                    endpoint.workers += 1
                    task = asyncio.create_task(self._work(endpoint))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            if len(claimed) < limit:
                # The search ran out of due rows it may take: the next one would find as
                # little until something changes (see above), so it waits for that first.
                await self._idle()

    def _hold(self, key: SubscriptionKey) -> None:
        self._held[key] = self._held.get(key, 0) + 1
        self._holding += 1

    def _release(self, key: SubscriptionKey) -> None:
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._holding -= 1
        self._room.set()
        if left <= self._refill:
            self._claimable.set()

    async def _claim(self, limit: int, full: list[SubscriptionKey]) -> list[asyncpg.Record]:
        return await claim_due(
            self._pool,
            limit=limit,
            lease=self.lease,
            cap=self._settings.push_subscription_cap,
            held=self._held,
            full=full,
        )

    async def _idle(self) -> None:
        """Until new deliveries are recorded (`wake`), a written-back row leaves its
        subscription claimable, or 0.5 s have passed (since the last search began)."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if self._holding:
            waits.append(asyncio.ensure_future(self._claimable.wait()))
        try:
            await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # -- pushing ------------------------------------------------------------------------

    def _endpoint(self, url: str) -> Endpoint:
        name = endpoint_of(url)
        found = self._endpoints.get(name)
        if found is None:
            cfg = self._settings
            breaker = Breaker(
                failures=cfg.breaker_failures,
                open_for=cfg.breaker_open_seconds,
                max_open=cfg.breaker_max_open_seconds,
            )
            found = self._endpoints[name] = Endpoint(name, cfg.push_endpoint_concurrency, breaker)
        return found

    async def _work(self, endpoint: Endpoint) -> None:
        """One of an endpoint's workers: pushes its queued deliveries one after another and
        ends when none is left (the next claim starts workers again)."""
        try:
            while endpoint.queue:
                d, key, claimed = endpoint.queue.popleft()
                # This worker's log lines (and its libraries') name the push at hand.
                bind_contextvars(tenant=key[0], cdr_id=str(d["cdr_id"]), delivery_id=d["id"])
                try:
                    outcome = await self._attempt(endpoint, d, key, claimed)
                except Exception as exc:  # a bug here must not strand the row: back untried
                    log.error("delivery %s: %r", d["id"], exc, exc_info=exc)
                    outcome = _untried(d, key, datetime.now(UTC) + timedelta(seconds=60))
                self._outcomes.append(outcome)
                self._ready.set()
        finally:
            endpoint.workers -= 1

    async def _attempt(
        self, endpoint: Endpoint, d: asyncpg.Record, key: SubscriptionKey, claimed: float
    ) -> Outcome:
        # Sent only with enough lease left for the whole push: a row that waited too long is
        # handed back untried, so no other notifier can be pushing it at the same time.
        latest = claimed + self.lease - self._settings.push_timeout - 10
        async with self._slots:
            now = time.monotonic()
            if now > latest:
                return _untried(d, key, datetime.now(UTC))
            if not endpoint.breaker.admit(now):
                self._paused[key] = endpoint
                until = endpoint.breaker.open_until or now
                when = datetime.now(UTC) + timedelta(seconds=max(1.0, until - now))
                return _untried(d, key, when)
            started = datetime.now(UTC)
            posting = self._post(d)
            posted = await (self._traced(posting, d, key) if tracing.enabled() else posting)
            status, error, retry_after, latency_ms, excerpt = posted
            failed = error is not None and (status is None or status == 429 or status >= 500)
            was_open = endpoint.breaker.is_open
            if endpoint.breaker.record(failed, time.monotonic()):
                log.warning(
                    "endpoint %s: breaker open after failed pushes (%s)", endpoint.name, error
                )
                endpoint.opens.inc()
                self._paused[key] = endpoint
            if endpoint.breaker.is_open != was_open:
                endpoint.open_gauge.set(1 if endpoint.breaker.is_open else 0)
            endpoint.seconds.observe(latency_ms / 1000)
        # Delays count from the answer: Retry-After is relative to the response, and a slow
        # CRM's answer may come push_timeout seconds after the attempt began.
        answered = datetime.now(UTC)
        attempt_no = d["attempt_count"] + 1
        ok = error is None
        (_DELIVERED if ok else _FAILED).inc()
        if ok:
            state, next_at = "delivered", answered
        elif attempt_no >= d["max_attempts"]:
            state, next_at = "dead", answered
        else:
            delay = backoff_seconds(
                attempt_no,
                base=self._settings.retry_base_seconds,
                cap=self._settings.retry_max_seconds,
                factor=self._settings.retry_multiplier,
            )
            if retry_after is not None:
                delay = min(max(delay, retry_after), self._settings.retry_max_seconds)
            state, next_at = "pending", answered + timedelta(seconds=delay)
        if state != "pending":
            _ENDED[state].inc()
        attempt = Attempt(
            at=started,
            http_status=status,
            latency_ms=latency_ms,
            # A CRM's reply text is quoted in `error`: it may carry bytes text cannot hold.
            error=None if error is None else pg_text(error, _MAX_ERROR_CHARS),
            response_excerpt=None if excerpt is None else pg_text(excerpt, _EXCERPT_BYTES),
        )
        return Outcome(
            key, d["id"], d["lease"], state, attempt_no, next_at, attempt, gone=status == 410
        )

    # -- writing outcomes ---------------------------------------------------------------

    async def _write_outcomes(self) -> None:
        while not (self._draining and self._holding == 0):
            await self._ready.wait()
            # A few milliseconds for others to finish: one transaction for many outcomes.
            await asyncio.sleep(0.005)
            self._ready.clear()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            # Kept until written: losing them would re-push (still safe, the same webhook-id)
            # but lose the attempt log.
            await self._retrying(record_outcomes, self._pool, batch, what="recording push outcomes")
            for o in batch:
                if o.gone:
                    log.warning("subscription %s/%s disabled: its CRM answered 410 Gone", *o.key)
                self._release(o.key)

    async def _retrying(self, fn: Callable[..., Awaitable[T]], *args: Any, what: str) -> T:
        """`fn(*args)` until it succeeds while PostgreSQL trouble passes: capped backoff,
        forever, never skipping. Any other failure ends the dispatcher, so its supervisor
        reports it and the process restarts, rather than stalling every tenant's pushes."""

        def log_and_retry(exc: Exception) -> bool:
            if not isinstance(exc, Exception) or not is_transient(exc):
                return False  # cancellation (shutdown) or not passing trouble
            log.error("%s failed; retrying", what, exc_info=exc)
            return True

        async for attempt in stamina.retry_context(
            on=log_and_retry, attempts=None, timeout=None, wait_initial=0.5, wait_max=5.0
        ):
            with attempt:
                return await fn(*args)
        raise AssertionError("unreachable: the retries never stop")

    async def _traced(
        self, posting: Awaitable[Posted], d: asyncpg.Record, key: SubscriptionKey
    ) -> Posted:
        """`posting` in a `push` span that continues the trace of the call the row came from
        (its traceparent, kept by the recorder); the HTTP client's span nests in it."""
        with tracing.resumed(d["traceparent"], "push") as span:
            assert span is not None
            span.set_attributes(
                {
                    "cdrflow.tenant": key[0],
                    "cdrflow.subscription": key[1],
                    "cdrflow.delivery.id": d["id"],
                    "cdrflow.delivery.attempt": d["attempt_count"] + 1,
                    "webhook.id": d["webhook_id"],
                }
            )
            posted = await posting
            if posted[1] is not None:
                tracing.failed(span, posted[1])
            return posted

    def _signing(self, d: asyncpg.Record) -> list[str]:
        secrets = [self._secrets.open(d["secret"])]
        until = d["previous_secret_until"]
        if d["previous_secret"] and until is not None and until > datetime.now(UTC):
            secrets.append(self._secrets.open(d["previous_secret"]))
        return secrets

    async def _post(self, d: asyncpg.Record) -> Posted:
        """(HTTP status, error or None on success, Retry-After seconds, latency ms, the
        first 2 KiB of the reply)."""
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            # Names are held to public addresses by the session's resolver (PublicResolver),
            # at connect time, so a DNS answer cannot change between check and use.
            refused = refusal(d["url"], allow_private=self._settings.allow_private_webhooks)
            if refused is not None:
                return None, refused, None, elapsed_ms(), None
            if d["format"] == "json":
                # The stored record's JSON text as it is: the same object the json format
                # sends, without decoding it into Python and encoding it again for each push.
                body, content_type = d["payload_json"].encode(), "application/json"
            else:
                record = json.loads(d["payload_json"])
                body, content_type = encode(d["format"], record, xmlrpc_method=d["xmlrpc_method"])
            ts = int(time.time())
            headers = {
                "content-type": content_type,
                "user-agent": "cdrflow-notifier/0.1",
                "webhook-id": d["webhook_id"],
                "webhook-timestamp": str(ts),
                # Space-separated signatures: the current secret's, then during a rotation
                # the previous one's, so a receiver still holding the old secret verifies.
                "webhook-signature": " ".join(
                    sign(secret, d["webhook_id"], ts, body) for secret in self._signing(d)
                ),
            }
            async with self._session.post(
                d["url"], data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                reply = await resp.content.read(_MAX_RESPONSE)
                latency = elapsed_ms()
                excerpt = reply[:_EXCERPT_BYTES].decode("utf-8", "replace")
                if not 200 <= resp.status < 300:
                    retry = retry_after_seconds(resp.headers.get("Retry-After"), datetime.now(UTC))
                    return resp.status, f"HTTP {resp.status}", retry, latency, excerpt
                ok, why = acknowledged(reply, resp.headers.get("content-type", ""))
                return resp.status, (None if ok else why or "Err != 0"), None, latency, excerpt
        except TimeoutError:
            return None, "timeout", None, elapsed_ms(), None
        except Exception as exc:  # any failure is a failed attempt; the dispatcher goes on
            return None, f"{type(exc).__name__}: {exc}", None, elapsed_ms(), None


def _untried(d: asyncpg.Record, key: SubscriptionKey, when: datetime) -> Outcome:
    """A claimed delivery handed back, no attempt made, due at `when`."""
    return Outcome(key, d["id"], d["lease"], "pending", d["attempt_count"], when)

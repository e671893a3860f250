"""Pushing deliveries to CRMs: claim due rows, POST signed bodies, record every attempt.

At-least-once: a delivery is leased (FOR UPDATE SKIP LOCKED + locked_until), pushed, and its
outcome written afterwards. A notifier killed mid-push leaves the lease to expire and the
delivery is pushed again with the same webhook-id, so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import stamina
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_notifier import repository
from cdr_notifier.formats import acknowledged, encode, sign
from cdr_notifier.settings import NotifierSettings
from cdr_notifier.urls import check_url
from cdrmodel.db import is_transient, pg_text
from cdrmodel.errors import CdrError

log = logging.getLogger(__name__)

PUSHES = Counter("cdrflow_notifier_push_attempts_total", "Push attempts", ["outcome"])
PUSH_SECONDS = Histogram("cdrflow_notifier_push_seconds", "Latency of push attempts")
_MAX_RESPONSE = 64 * 1024
_MAX_ERROR_CHARS = 2000

T = TypeVar("T")


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


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential with full jitter in its upper half: base·2^(n-1) · U(0.5, 1)."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return raw * random.uniform(0.5, 1.0)


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        session: aiohttp.ClientSession,
        settings: NotifierSettings,
        wake: asyncio.Event,
    ) -> None:
        self._engine = engine
        self._session = session
        self._settings = settings
        self._wake = wake
        self._slots = asyncio.Semaphore(settings.push_concurrency)

    async def run(self) -> None:
        # A claimed batch is pushed in rounds of `push_concurrency`; the lease must outlast the
        # slowest possible batch, or another notifier would push the same delivery meanwhile.
        cfg = self._settings
        rounds = -(-cfg.push_claim_batch // cfg.push_concurrency)
        lease = rounds * cfg.push_timeout + 30
        while True:
            claimed = await self._retrying(self._claim, lease, what="claiming deliveries")
            if not claimed:
                await self._idle()
                continue
            outcomes = await asyncio.gather(*(self._attempt(d) for d in claimed))
            attempts = [a for a, _ in outcomes if a is not None]
            updates = [u for _, u in outcomes]
            # Keep the outcomes until they are written: losing them would re-push (still safe,
            # the same webhook-id) but lose the attempt log.
            await self._retrying(self._record, attempts, updates, what="recording push outcomes")

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

    async def _claim(self, lease: float) -> list[dict[str, Any]]:
        async with self._engine.begin() as conn:
            return await repository.claim_due(
                conn, limit=self._settings.push_claim_batch, lease=lease
            )

    async def _record(self, attempts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await repository.record_outcomes(conn, attempts=attempts, updates=updates)

    async def _idle(self) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(0.5):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _attempt(self, d: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        now = datetime.now(UTC)
        if not d["enabled"]:  # paused subscription: look again later, no attempt made
            return None, {
                "id": d["id"],
                "lease": d["lease"],
                "status": "pending",
                "attempt_count": d["attempt_count"],
                "next_attempt_at": now + timedelta(seconds=60),
            }
        async with self._slots:
            status, error, retry_after, latency_ms = await self._post(d)
        # Delays count from the answer: Retry-After is relative to the response, and a slow
        # CRM's answer may come push_timeout seconds after the attempt began.
        answered = datetime.now(UTC)
        attempt_no = d["attempt_count"] + 1
        ok = error is None
        PUSHES.labels("delivered" if ok else "failed").inc()
        if ok:
            state, next_at = "delivered", answered
        elif attempt_no >= d["max_attempts"]:
            state, next_at = "dead", answered
        else:
            delay = backoff_seconds(
                attempt_no,
                base=self._settings.retry_base_seconds,
                cap=self._settings.retry_max_seconds,
            )
            if retry_after is not None:
                delay = min(max(delay, retry_after), self._settings.retry_max_seconds)
            state, next_at = "pending", answered + timedelta(seconds=delay)
        attempt = {
            "delivery_id": d["id"],
            "at": now,
            "http_status": status,
            "latency_ms": latency_ms,
            # A CRM's reply text is quoted in `error`: it may carry bytes text cannot hold.
            "error": None if error is None else pg_text(error, _MAX_ERROR_CHARS),
        }
        update = {
            "id": d["id"],
            "lease": d["lease"],
            "status": state,
            "attempt_count": attempt_no,
            "next_attempt_at": next_at,
        }
        return attempt, update

    async def _post(self, d: dict[str, Any]) -> tuple[int | None, str | None, float | None, int]:
        """(HTTP status, error or None on success, Retry-After seconds, latency ms)."""
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            # Names are held to public addresses by the session's resolver (PublicResolver),
            # at connect time, so a DNS answer cannot change between check and use.
            await check_url(
                d["url"], allow_private=self._settings.allow_private_webhooks, resolve=False
            )
            body, content_type = encode(d["format"], d["payload"], xmlrpc_method=d["xmlrpc_method"])
            ts = int(time.time())
            headers = {
                "content-type": content_type,
                "user-agent": "cdrflow-notifier/0.1",
                "webhook-id": d["webhook_id"],
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(d["secret"], d["webhook_id"], ts, body),
            }
            timeout = aiohttp.ClientTimeout(total=self._settings.push_timeout)
            async with self._session.post(
                d["url"], data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                reply = await resp.content.read(_MAX_RESPONSE)
                latency = elapsed_ms()
                PUSH_SECONDS.observe(latency / 1000)
                if not 200 <= resp.status < 300:
                    retry = retry_after_seconds(resp.headers.get("Retry-After"), datetime.now(UTC))
                    return resp.status, f"HTTP {resp.status}", retry, latency
                ok, why = acknowledged(reply, resp.headers.get("content-type", ""))
                return resp.status, (None if ok else why or "Err != 0"), None, latency
        except CdrError as exc:
            return None, exc.message, None, elapsed_ms()
        except TimeoutError:
            return None, "timeout", None, elapsed_ms()
        except Exception as exc:  # any failure is a failed attempt; the dispatcher goes on
            return None, f"{type(exc).__name__}: {exc}", None, elapsed_ms()

"""Credentials: argon2 hashes at rest, a verified-credential cache, a password-guessing throttle.

argon2 verification costs tens of milliseconds of CPU by design; a PBX posting every call
cannot pay that per request. After one successful verification we keep an HMAC of the
password under a per-process random key, bound to the stored hash (a password change makes a
new hash and so a cache miss), and compare later requests against it in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_slow(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class CredentialVerifier:
    def __init__(self, max_entries: int = 10000) -> None:
        self._key = os.urandom(32)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_entries
        # One argon2 check per (hash, password) at a time: a PBX's first burst of concurrent
        # requests shares it instead of running dozens of identical slow checks.
        self._inflight: dict[tuple[str, bytes], asyncio.Future[bool]] = {}

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    async def verify(self, password_hash: str, password: str) -> bool:
        mac = self._mac(password)
        known = self._cache.get(password_hash)
        if known is not None:
            return hmac.compare_digest(known, mac)
        key = (password_hash, mac)
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            ok = await asyncio.to_thread(_verify_slow, password_hash, password)
            if ok:
                self._cache[password_hash] = mac
                if len(self._cache) > self._max:
                    self._cache.popitem(last=False)
            future.set_result(ok)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._inflight[key]
        return ok


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def client_key(address: str | None) -> str:
    """The unit one budget of password guesses belongs to: an IPv4 address, or an IPv6 /64.

    One IPv6 subscriber commonly holds a whole /64, so per-address budgets there would be
    unlimited; a caller without an address (a Unix socket) shares one budget per account.
    """
    if not address:
        return ""
    if ":" not in address:
        return address
    try:
        parsed = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))


@dataclass(slots=True)
class _Record:
    failures: int = 0
    window_start: float = 0.0
    blocked_until: float = 0.0
    strikes: int = 0
    last_failure: float = 0.0


class FailureThrottle:
    """Counts wrong passwords per (account, client) and says when to stop checking them.

    `max_failures` wrong passwords within `window` seconds block that pair for `base_backoff`
    seconds; each further wrong password after a block ends blocks again for twice as long, up
    to `max_backoff`; a success, or `forget_after` seconds without a wrong password, clears the
    pair. At most `max_entries` pairs are remembered, least recently used dropped first, so a
    flood of distinct addresses costs bounded memory (each such address only ever gets its own
    `max_failures` guesses). State is per process: N replicas give an attacker N budgets.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        base_backoff: float = 1.0,
        max_backoff: float = 300.0,
        forget_after: float = 900.0,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._clock = clock
        self._records: OrderedDict[Hashable, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def blocked_for(self, key: Hashable) -> float:
        """Seconds this pair is still blocked; 0 when its password may be checked."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        remaining = record.blocked_until - self._clock()
        if remaining <= 0:
            return 0.0
        self._records.move_to_end(key)  # an active attacker stays; the idle are dropped first
        return remaining

    def failed(self, key: Hashable) -> float:
        """Records a wrong password; answers the backoff it starts, or 0 when none."""
        now = self._clock()
        record = self._records.get(key)
        if record is None or now - record.last_failure > self.forget_after:
            record = _Record(window_start=now)
            self._records[key] = record
            if len(self._records) > self.max_entries:
                self._records.popitem(last=False)
        self._records.move_to_end(key)
        if now < record.blocked_until:
            return 0.0  # checked before the block began: already paid for, not a new strike
        record.last_failure = now
        if now - record.window_start > self.window:
            record.failures, record.window_start = 0, now
        record.failures += 1
        # After one block, every wrong password blocks again: the first few are a grace for
        # a mistyped configuration, not a budget that refills.
        if record.strikes == 0 and record.failures < self.max_failures:
            return 0.0
        record.strikes += 1
        backoff = min(self.max_backoff, self.base_backoff * 2 ** (record.strikes - 1))
        record.blocked_until = now + backoff
        record.failures = 0
        return backoff

    def succeeded(self, key: Hashable) -> None:
        self._records.pop(key, None)

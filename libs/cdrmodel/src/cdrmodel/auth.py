"""Credentials: argon2 hashes at rest, constant-time comparison, a verified-credential cache.

argon2 verification costs tens of milliseconds of CPU by design; a PBX posting every call
cannot pay that per request. After one successful verification we keep an HMAC of the
password under a per-process random key, bound to the stored hash (a password change makes a
new hash and so a cache miss), and compare later requests against it in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict

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

"""API accounts as principals: lookup with a short cache, the contract's auth codes, throttling."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.contextvars import bind_contextvars

from cdrmodel.auth import CredentialVerifier, FailureThrottle, client_key
from cdrmodel.db import api_account, tenant
from cdrmodel.errors import CdrError

DB_UNKNOWN = 50443
ACCOUNT_UNKNOWN = 50440
PASSWORD_MISSING = 50300
PASSWORD_WRONG = 50390

log = logging.getLogger(__name__)

AUTH_THROTTLED = Counter(
    "cdrflow_auth_throttled_total",
    "Attempts answered 50390 without checking the password: their (account, client) is "
    "backing off after repeated wrong passwords",
)
AUTH_LOCKOUTS = Counter(
    "cdrflow_auth_lockouts_total",
    "Backoffs started for an (account, client) after repeated wrong passwords",
)


@dataclass(frozen=True, slots=True)
class Principal:
    database_id: str
    api_account_id: str
    password_hash: str
    daily_limit: int | None
    default_package: str | None
    timezone: str
    country: str
    currency: str

    @property
    def name(self) -> str:
        return f"{self.database_id}/{self.api_account_id}"


class AuthError(CdrError):
    status_code = 401


_MISSING = object()


class PrincipalDirectory:
    """Looks API accounts up; caches rows for `ttl` seconds so a PBX burst costs one query.

    An entry answers fresh for `ttl` seconds from the moment its query began, then for
    `stale` seconds more while one background query refreshes it: an admin change (a new
    password, a deleted account) is seen by every replica within `ttl + stale` (1.5 s by
    default; the contract allows 2 s) at a cost of about one query per account per second.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl: float = 1.0,
        stale: float = 0.5,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._stale = stale
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Principal | bool]] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self.verifier = CredentialVerifier()
        self.throttle = throttle or FailureThrottle()

    async def _load(self, database_id: str, account_id: str) -> Principal | bool:
        """The principal; False when the tenant is unknown; True when only the account is.

        Fresh entries answer at once; an entry just past its TTL still answers while one
        background query refreshes it, so a cache expiry under load is not a stampede of
        identical queries; a cold key is fetched once however many requests wait for it.
        """
        key = (database_id, account_id)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None:
            expires, value = hit
            if expires > now:
                return value  # type: ignore[return-value]
            if expires + self._stale > now:
                self._refresh_soon(key)
                return value  # type: ignore[return-value]
        return await self._fetch_shared(key)

    def _refresh_soon(self, key: tuple[str, str]) -> None:
        if key in self._inflight or key in self._refreshing:
            return
        self._refreshing.add(key)
        task = asyncio.create_task(self._fetch_shared(key))

        def done(t: asyncio.Task[Principal | bool]) -> None:
            self._refreshing.discard(key)
            if not t.cancelled():
                t.exception()  # a failed refresh keeps the old entry until it goes stale

        task.add_done_callback(done)

    async def _fetch_shared(self, key: tuple[str, str]) -> Principal | bool:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._query(*key)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._inflight[key]
        return result

    async def _query(self, database_id: str, account_id: str) -> Principal | bool:
        key = (database_id, account_id)
        # The snapshot the row comes from is no newer than this instant: the freshness bound
        # counts from here, not from when a slow answer arrived.
        started = time.monotonic()
        query = (
            select(
                tenant,
                api_account.c.api_account_id,
                api_account.c.password_hash,
                api_account.c.daily_limit,
                api_account.c.default_package,
            )
            .select_from(
                tenant.outerjoin(
                    api_account,
                    and_(
                        api_account.c.database_id == tenant.c.database_id,
                        api_account.c.api_account_id == account_id,
                    ),
                )
            )
            .where(tenant.c.database_id == database_id)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        result: Principal | bool
        if row is None:
            result = False
        elif row["api_account_id"] is None:
            result = True
        else:
            result = Principal(
                database_id=database_id,
                api_account_id=account_id,
                password_hash=row["password_hash"],
                daily_limit=row["daily_limit"],
                default_package=row["default_package"],
                timezone=row["timezone"],
                country=row["country"],
                currency=row["currency"],
            )
        if len(self._cache) > 50000:
            self._cache.clear()
        self._cache[key] = (started + self._ttl, result)
        return result

    async def authenticate(
        self,
        database_id: str | None,
        account_id: str | None,
        password: str | None,
        *,
        client: str | None = None,
    ) -> Principal:
        """Checks in the contract's order; raises AuthError carrying the failing code.

        `client` is the caller's address: `request.client.host`, which uvicorn takes from
        X-Forwarded-For only for trusted proxies; never a header read here, which any caller
        could set. After repeated wrong passwords for this account from this
        address, the password is not checked for a while: the answer is 50390 whatever it is.
        Without an address, all such callers of an account share one budget.
        """
        if not database_id:
            raise AuthError("DatabaseID missing", code=DB_UNKNOWN)
        if not database_id.isprintable() or len(database_id) > 200:
            raise AuthError("DatabaseID unknown", code=DB_UNKNOWN)
        if account_id and (not account_id.isprintable() or len(account_id) > 200):
            account_id = None  # cannot exist; still check the database first (contract order)
        found = await self._load(database_id, account_id or "")
        if found is False:
            raise AuthError("DatabaseID unknown", code=DB_UNKNOWN)
        if not account_id or found is True:
            raise AuthError(
                "APIAccountID missing or unknown in that database", code=ACCOUNT_UNKNOWN
            )
        assert isinstance(found, Principal)
        if not password:
            raise AuthError("APIPassword missing", code=PASSWORD_MISSING)
        guesser = (database_id, account_id, client_key(client))
        if self.throttle.blocked_for(guesser) > 0:
            AUTH_THROTTLED.inc()
            raise AuthError("APIPassword wrong", code=PASSWORD_WRONG)
        if not await self.verifier.verify(found.password_hash, password):
            backoff = self.throttle.failed(guesser)
            if backoff:
                AUTH_LOCKOUTS.inc()
                log.warning(
                    "auth throttled: repeated wrong passwords for %s from %s; "
                    "not checking its passwords for %.1f s",
                    found.name,
                    client or "an unknown address",
                    backoff,
                )
            raise AuthError("APIPassword wrong", code=PASSWORD_WRONG)
        self.throttle.succeeded(guesser)
        # The request's later log lines name the tenant (cdrmodel.observe unbinds it after).
        bind_contextvars(tenant=found.database_id)
        return found


def split_login(login: str) -> tuple[str, str]:
    """`DatabaseID/APIAccountID` as one string (Basic user name, `login=` parameter)."""
    database_id, _, account_id = login.partition("/")
    return database_id, account_id


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(login, password) of an `Authorization: Basic …` header; None for any other scheme.

    A header that does not decode gives empty credentials, so the caller answers the
    contract's "DatabaseID missing" like any other request without them.
    """
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    login, _, password = decoded.partition(":")
    return login, password

"""API accounts as principals: lookup with a short cache, the contract's auth codes, throttling,
and the client networks an account may read from."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import time
from collections.abc import Iterable
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NETWORKS = 100  # per account: a list to check on every read, not a firewall


def parse_network(text: str) -> Network:
    """One allowlist entry, CIDR or a bare address (a /32 or /128), in its normal form: host
    bits cleared (`10.1.2.3/8` is `10.0.0.0/8`), IPv6 compressed and lower-case, and an
    IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it maps, since
    client addresses are judged that way too. ValueError naming the entry otherwise."""
    entry = text.strip()
    if "%" in entry:
        raise ValueError(f"{text!r}: a zone index (%...) is not part of a network")
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 network in CIDR form") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def normalise_networks(entries: Iterable[str]) -> list[str]:
    """Allowlist entries as they are stored: each `parse_network`ed, duplicates dropped, the
    order kept. ValueError naming the first bad entry."""
    return list(dict.fromkeys(str(parse_network(e)) for e in entries))


def client_address(host: str | None) -> Address | None:
    """The peer address a request came from, as allowlists judge it: an IPv4-mapped IPv6
    address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4 client) is
    its IPv4 address. None when there is no address or it is not an IP (a Unix socket)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _stored_networks(database_id: str, account_id: str, entries: list[str]) -> tuple[Network, ...]:
    """The stored list as networks. An entry that does not parse (written around the admin
    API) is dropped and logged: the list only grows narrower, never open to anywhere."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(parse_network(entry))
        except ValueError as exc:
            log.error(
                "api_account %s/%s: allowed_networks %s; ignored", database_id, account_id, exc
            )
    return tuple(networks)


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
    # The client networks this account may read from; None: anywhere. Ingest does not ask
    # (submissions come from PBXs wherever they are); the notifier's reads do.
    allowed_networks: tuple[Network, ...] | None = None

    @property
    def name(self) -> str:
        return f"{self.database_id}/{self.api_account_id}"

    def reads_allowed_from(self, host: str | None) -> bool:
        """Whether a read from the peer `host` is allowed. With an allowlist, a caller whose
        address is unknown or not an IP is refused: it cannot be shown to be inside."""
        if self.allowed_networks is None:
            return True
        address = client_address(host)
        if address is None:
            return False
        # `in` is False across IP versions: an IPv4 client never matches an IPv6 network.
        return any(address in network for network in self.allowed_networks)


class AuthError(CdrError):
    status_code = 401


class AddressRefused(AuthError):
    """The credentials are right but the account may not read from the caller's address.

    An AuthError, so a route that renders auth failures its own way renders this one too;
    403, not 401: trying other credentials from here is not what is needed."""

    status_code = 403


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
                api_account.c.allowed_networks,
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
            networks = row["allowed_networks"]
            result = Principal(
                database_id=database_id,
                api_account_id=account_id,
                password_hash=row["password_hash"],
                daily_limit=row["daily_limit"],
                default_package=row["default_package"],
                timezone=row["timezone"],
                country=row["country"],
                currency=row["currency"],
                allowed_networks=(
                    None
                    if networks is None
                    else _stored_networks(database_id, account_id, networks)
                ),
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
